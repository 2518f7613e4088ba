"""``FineTune``: a :class:`workbench.Run` that fine-tunes a pre-trained base — fully, with PEFT LoRA, or LoRA-SB.

>>> from workbench.finetune import FineTune, pretrained_base
>>> ft = FineTune(pretrained_base("gpt2-1m"), "recipes", method="lora", rank=8, init="pissa",
...               max_steps=100)                                                    # doctest: +SKIP
>>> ft.run()                                                                        # doctest: +SKIP
>>> ft.record[["loss", "val_loss", "pretrain_loss"]]    # task loss and forgetting  # doctest: +SKIP
>>> ft.delta_summary()                                  # ΔW = W − W0 per matrix    # doctest: +SKIP

What it adds to :class:`~workbench.Run`:

* **The reference W0 is snapshotted from the base before PEFT rewrites it** (PiSSA, OLoRA, CorDA and
  LoRA-GA set the base to ``W0 − s·B0A0``), so every ΔW, spectrum and intruder count compares with the
  true pre-trained weights.
* **Forgetting**: the held-out split of the pre-training corpus (``forget_eval``, ``stories`` by default)
  is evaluated with the task's ``val`` split at every eval, logged as ``pretrain_loss``.
* **Live intruders**: a :class:`workbench.spectra.SpectraProbe` (every ``intruders_every`` steps) and a
  :class:`~workbench.finetune.delta.DeltaProbe` on the targeted matrices record intruder counts, effective
  ranks and ΔW per matrix into the record.
* Every bad setting raises a :class:`~workbench.errors.ConfigError` before the model is modified.

The adapter is built once, in the constructor, from the declared parameters; to change ``method``,
``rank``, ``init``… build a new ``FineTune`` from the same base (``base`` is not modified by ``full``
only; PEFT wraps and may rewrite it — pass a copy if you need it again, :func:`fresh_copy`).
"""

from __future__ import annotations

import copy
import re
import time

import param
from torch import nn

from .. import data as data_mod, devices
from ..data.base import Dataset, Split, to_device
from ..errors import ConfigError
from ..rng import seeded
from ..run import Run
from ..snapshot import Snapshot
from . import adapters
from .delta import DeltaProbe, delta_summary
from .inits import LORA_INITS
from .lora_sb import lora_sb_layers, merge_lora_sb


def fresh_copy(model: nn.Module) -> nn.Module:
    """A deep copy of a base model (keeps ``workbench_origin``): fine-tune several methods from one base."""
    out = copy.deepcopy(model)
    out.workbench_origin = dict(getattr(model, "workbench_origin", {}) or {})
    return out


class FineTune(Run):
    """Fine-tune ``model`` on ``data``: ``method`` = full | lora (PEFT) | lora_sb.

    Parameters
    ----------
    model : a pre-trained ``nn.Module``; a preset name (pre-trained on ``stories`` and cached, see
        :func:`~workbench.finetune.pretrained_base`); or a local model folder / HF hub id.
    data : the fine-tuning dataset (name, path or :class:`~workbench.data.Dataset`), e.g. ``"recipes"``.
    forget_data : the pre-training distribution's held-out data (``Dataset`` → its ``val`` split, or a
        ``Split``); default: ``forget_eval`` loaded with the fine-tuning data's block size.
    evals, probes, reference, parent : as for :class:`~workbench.Run` (``reference`` defaults to W0 of the base).
    **params : the declared parameters below and every :class:`~workbench.Run` parameter.
    """

    method = param.Selector(default="lora", objects=list(adapters.METHODS),
                            doc="full: every weight trains; lora: PEFT LoRA; lora_sb: B·R·A with trainable r×r R.")
    rank = param.Integer(default=8, softbounds=(1, 256), doc="LoRA rank r (≤ the smallest targeted matrix dimension).")
    alpha = param.Number(default=16.0, softbounds=(0.5, 256), doc="LoRA alpha; scale s = alpha/r (alpha/√r with rsLoRA).")
    target_modules = param.Parameter(default=None, doc="Module names (list), a regex over full names, 'all-linear', "
                                                       "or None for the family's attention+MLP projections.")
    dropout = param.Number(default=0.0, bounds=(0, 1), inclusive_bounds=(True, False), doc="Dropout on the adapter input.")
    use_rslora = param.Boolean(default=False, doc="Rank-stabilized scaling alpha/√r.")
    use_dora = param.Boolean(default=False, doc="DoRA: learn the magnitude of each weight column separately.")
    init = param.Selector(default="default", check_on_set=False,
                          objects=[n.replace("_k", "_4") if n == "pissa_niter_k" else n for n in LORA_INITS.names()],
                          doc="LoRA init (PEFT init_lora_weights); pissa_niter_<k> takes any k. Ignored by full/lora_sb.")
    init_batches = param.Integer(default=4, bounds=(0, None), doc="Training batches used by data-driven inits "
                                                                   "(EVA, CorDA, LoRA-GA, LoRA-SB).")
    sb_start = param.Selector(default="zero", objects=["zero", "first_step"],
                              doc="LoRA-SB: R0 = 0 (no-op) or the rank-r projection of one SGD step of size lr.")
    forget_eval = param.String(default="stories", doc="Pre-training dataset whose held-out loss measures forgetting "
                                                      "(logged as pretrain_loss); '' turns it off.")
    intruders_every = param.Integer(default=50, bounds=(0, None), doc="Measure intruders and ΔW every this many "
                                                                      "steps (0 = off).")
    intruder_k = param.Integer(default=10, bounds=(1, None), doc="Top-k singular vectors checked for intruders.")
    intruder_eps = param.Number(default=0.5, bounds=(0, 1), doc="Intruder threshold on max |cos| with W0's vectors.")

    ADAPTER_PARAMS = ("method", "rank", "alpha", "target_modules", "dropout", "use_rslora", "use_dora", "init",
                      "init_batches", "sb_start")

    def __init__(self, model: nn.Module | str, data: Dataset | str, evals: dict | None = None, probes=(),
                 reference: Snapshot | None = None, parent: str | None = None,
                 forget_data: Dataset | Split | None = None, **params):
        data = data_mod.load(data) if isinstance(data, str) else data
        if isinstance(model, str):
            from .pretrain import pretrained_base

            model = pretrained_base(model)
        evals = dict(evals or {})
        forget = self._forget_split(forget_data, params.get("forget_eval", type(self).forget_eval), data)
        if forget is not None and "pretrain" not in evals:
            evals["pretrain"] = forget
        # Run.__init__ validates every declared parameter and modifies nothing.
        super().__init__(model, data, evals=evals, probes=(), reference=None, parent=parent, **params)
        base = self.model
        self.targets = adapters.check(base, self.method, self.rank, self.alpha, self.target_modules, self.init,
                                      self.use_dora, has_data=self.init_batches > 0)
        #: canonical matrix names of the targeted modules (what intruders/ΔW are measured on; same for full FT).
        self.target_matrices = [f"{name}.weight" for name in self.targets]
        device = devices.resolve_device(self.device)
        base.to(device)
        # W0 BEFORE PEFT rewrites anything.
        self.reference = reference if reference is not None else Snapshot.from_model(base)
        batches = [to_device(self.data.train.batch_at(i, self.batch_size, self.seed), device)
                   for i in range(self.init_batches)]
        t0 = time.perf_counter()
        # Adapter init (Kaiming/Gaussian A, EVA/PiSSA randomness) is seeded by `seed`, not the global RNG state.
        with seeded(self.seed, devices=[device] if device.type == "cuda" else []):
            self.model = adapters.build(base, self.method, self.targets, self.rank, self.alpha, self.init,
                                        self.dropout, self.use_rslora, self.use_dora, batches, self.data.loss,
                                        self.sb_start, self.lr)
        #: seconds spent building the adapter (SVDs, gradient / calibration passes of data-driven inits).
        self.init_seconds = time.perf_counter() - t0
        if self.intruders_every > 0:
            self.add_probe(self._spectra_probe())
            self.add_probe(DeltaProbe(self.target_matrices, every=self.intruders_every))
        for probe in probes:
            self.add_probe(probe)

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _forget_split(forget_data, forget_eval: str, data: Dataset) -> Split | None:
        if forget_data is not None:
            if isinstance(forget_data, Dataset):
                return forget_data.split("val")
            if isinstance(forget_data, Split):
                return forget_data
            raise ConfigError(f"forget_data must be a Dataset or a Split, got {type(forget_data).__name__}.")
        if not forget_eval:
            return None
        opts = dict(data.info.get("options") or {})
        kw = {"block_size": opts["block_size"]} if "block_size" in opts else {}
        if data.tokenizer is not None:
            kw["tokenizer"] = data.tokenizer
        try:
            ds = data_mod.load(forget_eval, n_docs=1, n_val_docs=200, **kw)
        except ConfigError:  # not a built-in corpus (a file): load it as is
            ds = data_mod.load(forget_eval, **({"tokenizer": data.tokenizer} if data.tokenizer is not None else {}))
        if "val" not in ds.splits:
            raise ConfigError(f"forget_eval {forget_eval!r} has no 'val' split to measure forgetting on; "
                              f"its splits are {list(ds.splits)}.")
        return ds.split("val")

    def _spectra_probe(self):
        try:
            from ..spectra import SpectraProbe
        except ImportError as exc:
            raise ConfigError(f"Live intruders need workbench.spectra ({exc}); set intruders_every=0 to train "
                              "without them.") from None
        pattern = "^(" + "|".join(re.escape(n) for n in self.target_matrices) + ")$"
        return SpectraProbe(every=self.intruders_every, k=self.intruder_k, eps=self.intruder_eps, include=pattern)

    # ------------------------------------------------------------------ results
    def scaling(self) -> float:
        """The LoRA scale s (1.0 for full fine-tuning)."""
        return 1.0 if self.method == "full" else adapters.scaling(self.alpha, self.rank, self.use_rslora)

    def delta_summary(self):
        """Per-matrix norm and effective rank of ΔW = W − W0 over the targeted matrices (``xr.Dataset``)."""
        return delta_summary(self.model, self.reference, self.target_matrices)

    def describe_model(self) -> dict:
        desc = super().describe_model()
        desc["finetune"] = {"method": self.method, "targets": len(self.targets), "scaling": self.scaling(),
                            "init_seconds": round(self.init_seconds, 4)}
        return desc


def merged(run_or_model, copy_model: bool = True) -> nn.Module:
    """A plain model whose weights are the effective fine-tuned weights (PEFT ``merge_and_unload``, LoRA-SB merged).

    By default the run's model is deep-copied first, so the run can keep training.
    """
    model = run_or_model.model if isinstance(run_or_model, Run) else run_or_model
    model = fresh_copy(model) if copy_model else model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if lora_sb_layers(model):
        model = merge_lora_sb(model)
    return model
