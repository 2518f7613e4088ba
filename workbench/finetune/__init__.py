"""Fine-tuning lab: full fine-tuning vs PEFT LoRA (every offline init) vs LoRA-SB, with true ΔW and live intruders.

>>> from workbench.finetune import FineTune, pretrained_base, LORA_INITS
>>> "pissa" in LORA_INITS
True

* :func:`pretrained_base` — a small causal LM pre-trained on ``stories`` (cached) or any model folder / hub id.
* :class:`FineTune` — the stage (a :class:`workbench.Run`); ``method`` = full | lora | lora_sb | miss | fourierft | vera | adalora
  (:data:`METHODS`, one file each in ``finetune/methods/``); ``optimizer`` = lora_fa | loraplus for LoRA.
* :data:`LORA_INITS` — PEFT's offline ``init_lora_weights`` as data (needs data? no-op? rewrites W0?).
* :func:`delta_weights` / :func:`delta_summary` / :class:`DeltaProbe` — ΔW = W_effective − W0.
* :func:`mitigate_intruders` — scale intruder components by λ (PEFT's reduce_intruder_dimension) and re-measure.
* :func:`merged` — a plain model with the fine-tuned effective weights.

See ``docs/finetune.md``.
"""

from .adapters import DEFAULT_TARGETS, resolve_targets, scaling
from .delta import DeltaProbe, delta_summary, delta_weights
from .inits import LORA_INITS
from .lora_sb import LoraSBLayer
from .methods import METHODS, Method
from .pretrain import pretrained_base
from .stage import FineTune, fresh_copy, merged

__all__ = ["FineTune", "pretrained_base", "LORA_INITS", "METHODS", "Method", "DEFAULT_TARGETS", "resolve_targets", "scaling",
           "delta_weights", "delta_summary", "DeltaProbe", "LoraSBLayer", "fresh_copy", "merged"]
