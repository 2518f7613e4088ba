"""PEFT glue: check a LoRA setting against a base model, then build the adapter (PEFT, or LoRA-SB).

Everything a researcher can get wrong is checked by :func:`check` *before* the model is touched:
a PEFT model passed in again, adapters already merged, rank ≤ 0 or larger than a targeted matrix,
target modules that match nothing (the error lists the model's linear modules), an init PEFT does not
know, a data-driven init without data, ``alpha ≤ 0``, an odd rank for ``orthogonal``, OLoRA on GPT-2's
Conv1D. :func:`build` then runs the init's preprocessing (EVA, CorDA, LoRA-GA, LoRA-SB gradient) and
wraps the model with ``peft.get_peft_model`` — LoRA layers are always PEFT's own.

Target modules: ``None`` picks per-family defaults (:data:`DEFAULT_TARGETS`: every attention and MLP
projection, never the embeddings or the LM head); a list uses PEFT's rule (a name equals the module's
full name or ends with ``.<name>``); a string is a regular expression matched against the full name
(PEFT's ``re.fullmatch``). Matches are resolved here to an explicit list of full module names, so
LoRA, LoRA-SB and full fine-tuning's comparisons all refer to the same matrices.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Callable, Iterable

import torch
from torch import nn

from ..errors import ConfigError
from ..matrices import is_conv1d
from .inits import resolve
from .lora_sb import apply_lora_sb, full_gradients, lora_sb_layers

#: the methods this module builds itself; every method is in :data:`workbench.finetune.methods.METHODS`.
BUILT_HERE = ("full", "lora", "lora_sb")

DEFAULT_TARGETS = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
}


def linear_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every ``nn.Linear`` / GPT-2 ``Conv1D`` except the output (LM head) layer, by full module name."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {n: m for n, m in model.named_modules()
            if (isinstance(m, nn.Linear) or is_conv1d(m)) and m is not head and n}


def shape_of(module: nn.Module) -> tuple[int, int]:
    """``(out, in)`` of a Linear / Conv1D."""
    w = module.weight
    return (w.shape[1], w.shape[0]) if is_conv1d(module) else (w.shape[0], w.shape[1])


def default_targets(model: nn.Module) -> list[str] | str:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return DEFAULT_TARGETS.get(model_type, "all-linear")


def resolve_targets(model: nn.Module, target_modules) -> dict[str, nn.Module]:
    """Full module name → module for the modules ``target_modules`` selects (``ConfigError`` if none)."""
    spec = default_targets(model) if target_modules in (None, "", []) else target_modules
    candidates = linear_modules(model)
    if isinstance(spec, str) and spec.lower() == "all-linear":
        found = dict(candidates)
    elif isinstance(spec, str):
        try:
            pattern = re.compile(spec)
        except re.error as exc:
            raise ConfigError(f"target_modules {spec!r} is not a valid regular expression ({exc}).") from None
        found = {n: m for n, m in candidates.items() if pattern.fullmatch(n)}
    elif isinstance(spec, (list, tuple, set)) and all(isinstance(s, str) for s in spec):
        found = {n: m for n, m in candidates.items() if any(n == s or n.endswith("." + s) for s in spec)}
    else:
        raise ConfigError(f"target_modules must be a list of module names, a regular expression or None, got {spec!r}.")
    if not found:
        short = sorted({n.rsplit(".", 1)[-1] for n in candidates})
        raise ConfigError(f"target_modules {spec!r} match no linear module of this {type(model).__name__}. "
                          f"Its linear modules are named {short} (e.g. {next(iter(candidates), '(none)')!r}); "
                          "pass some of these names, a regex over full names, or None for the defaults.")
    return found


def check_base(model: nn.Module) -> None:
    """Refuse PEFT models, models with merged adapters and LoRA-SB models (before anything is modified)."""
    if hasattr(model, "peft_config") or type(model).__name__.startswith("Peft"):
        raise ConfigError("This model is already a PEFT model (it has adapters). Pass the base model, or call "
                          "model.merge_and_unload() (finetune.merged(run)) and fine-tune the result.")
    merged = [n for n, m in model.named_modules() if getattr(m, "merged_adapters", None)]
    if merged:
        raise ConfigError(f"This model has LoRA adapters merged into its weights ({merged[0]!r} …) but still carries "
                          "the adapter layers; fine-tuning it would apply them twice. Call merge_and_unload() first.")
    if lora_sb_layers(model):
        raise ConfigError("This model already has LoRA-SB layers. Merge them (finetune.merged(run)) or pass the base.")


def scaling(alpha: float, rank: int, use_rslora: bool) -> float:
    """LoRA's output scale s: ``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA (PEFT's rule)."""
    return alpha / math.sqrt(rank) if use_rslora else alpha / rank


def check(model: nn.Module, method: str, rank: int, alpha: float, target_modules, init: str, use_dora: bool = False,
          has_data: bool = True) -> dict[str, nn.Module]:
    """Validate a fine-tuning setting against ``model``; returns the targeted modules. Modifies nothing."""
    check_base(model)
    if method not in BUILT_HERE:
        raise ConfigError(f"adapters.check handles {', '.join(BUILT_HERE)}; method {method!r} is built by its class in "
                          "workbench.finetune.methods (METHODS.get(name)).")
    targets = resolve_targets(model, target_modules)
    if method == "full":
        return targets
    if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
        raise ConfigError(f"rank must be a positive integer, got {rank!r}.")
    smallest = min(targets.items(), key=lambda kv: min(shape_of(kv[1])))
    if rank > min(shape_of(smallest[1])):
        raise ConfigError(f"rank {rank} is larger than the targeted matrix {smallest[0]!r} of shape "
                          f"{shape_of(smallest[1])} allows (at most {min(shape_of(smallest[1]))}); lower the rank "
                          "or exclude that module from target_modules.")
    if not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise ConfigError(f"alpha must be a finite number > 0 (the LoRA scale is alpha/r), got {alpha!r}.")
    if method == "lora_sb":
        if use_dora:
            raise ConfigError("use_dora applies to PEFT LoRA only; LoRA-SB has no magnitude vector. Set use_dora=False.")
        if not has_data:
            raise ConfigError("LoRA-SB initializes from the first full gradient: it needs training data.")
        return targets
    spec = resolve(init).spec
    if spec.needs_data and not has_data:
        raise ConfigError(f"init {init!r} is data-driven: it needs batches of training data (init_batches ≥ 1).")
    if spec.even_rank and rank % 2:
        raise ConfigError(f"init {init!r} needs an even rank in PEFT (it splits an orthogonal r×r matrix in two); "
                          f"got rank {rank}.")
    if not spec.conv1d and any(is_conv1d(m) for m in targets.values()):
        raise ConfigError(f"init {init!r} does not work on GPT-2's Conv1D layers in PEFT 0.21 (shape mismatch); "
                          "use a Llama-style model (llama-1m) or another init.")
    if use_dora and init in ("eva",):
        raise ConfigError("EVA with DoRA is not supported by PEFT; set use_dora=False.")
    return targets


def lora_config(targets: dict[str, nn.Module], rank: int, alpha: float, init: str, dropout: float = 0.0,
                use_rslora: bool = False, use_dora: bool = False):
    """The ``peft.LoraConfig`` of a setting (explicit full module names as targets)."""
    from peft import LoraConfig

    res = resolve(init)
    kw = {}
    if res.name == "eva":
        from peft import EvaConfig

        kw["eva_config"] = EvaConfig()
    elif res.name == "corda":
        from peft.tuners.lora.config import CordaConfig

        kw["corda_config"] = CordaConfig(corda_method="ipm")
    elif res.name == "lora_ga":
        from peft.tuners.lora.config import LoraGAConfig

        kw["lora_ga_config"] = LoraGAConfig()
    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=sorted(targets), lora_dropout=dropout,
                      use_rslora=use_rslora, use_dora=use_dora, init_lora_weights=res.meta["peft_value"],
                      bias="none", fan_in_fan_out=any(is_conv1d(m) for m in targets.values()), **kw)


def peft_model(model: nn.Module, config, **kw) -> nn.Module:
    """``peft.get_peft_model`` without transformers' deprecation warning about ``is_gradient_checkpointing``
    (PEFT 0.21.2 reads that attribute of every model it wraps; nothing the user can act on)."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config, **kw)


def _examples(batches: list[dict]) -> Iterable[dict]:
    """Split batches into batch-size-1 dicts (CorDA's calibration must not see padding across examples)."""
    for b in batches:
        n = len(next(iter(b.values())))
        for i in range(n):
            yield {k: v[i : i + 1] for k, v in b.items()}


def build(model: nn.Module, method: str, targets: dict[str, nn.Module], rank: int, alpha: float, init: str,
          dropout: float = 0.0, use_rslora: bool = False, use_dora: bool = False, batches: list[dict] | None = None,
          loss_fn: Callable | None = None, sb_start: str = "zero", lr: float = 1e-3) -> nn.Module:
    """Wrap ``model`` for fine-tuning (call :func:`check` first). ``batches`` are on the model's device.

    * ``full``: the model itself, every parameter trainable.
    * ``lora``: ``peft.get_peft_model`` after the init's preprocessing (EVA / CorDA / LoRA-GA use ``batches``).
    * ``lora_sb``: :func:`workbench.finetune.lora_sb.apply_lora_sb` from the mean gradient over ``batches``.
    """
    batches = list(batches or [])
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if method == "lora_sb":
        grads = full_gradients(model, targets, loss_fn, batches)
        return apply_lora_sb(model, targets, grads, rank, scaling(alpha, rank, use_rslora), dropout, sb_start, lr)

    name = resolve(init).name
    config = lora_config(targets, rank, alpha, init, dropout, use_rslora, use_dora)
    if name == "lora_ga":
        from peft import preprocess_loraga

        def train_step():
            for batch in batches:
                loss, _ = loss_fn(model, batch)
                (loss / len(batches)).backward()

        with warnings.catch_warnings():  # PEFT's gradient hooks fire on module outputs: expected, harmless
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            preprocess_loraga(model, config, train_step)
    elif name == "corda":
        from peft.tuners.lora.corda import preprocess_corda

        @torch.no_grad()
        def run_model():
            for ex in _examples(batches):
                model(input_ids=ex["input_ids"], attention_mask=ex.get("attention_mask"))

        preprocess_corda(model, config, run_model=run_model)
    if name == "eva":
        from peft import initialize_lora_eva_weights

        wrapped = peft_model(model, config, low_cpu_mem_usage=True)
        initialize_lora_eva_weights(wrapped, dataloader=batches, show_progress_bar=False)
    else:
        wrapped = peft_model(model, config)
    return wrapped
