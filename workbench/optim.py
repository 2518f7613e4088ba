"""Optimizers and learning-rate schedules by name.

Schedules are pure functions ``factor(step) -> float`` multiplied into the run's ``lr`` at every step,
so the learning rate can be edited between steps and a resumed run needs no scheduler state beyond
its step. Registered schedules:

============  ==============================================================================
constant      warmup, then 1
cosine        warmup, then cosine decay to ``min_lr_ratio`` at ``max_steps``
wsd           warmup–stable–decay: warmup, flat, then linear decay to ``min_lr_ratio`` over the
              last ``decay_fraction`` of ``max_steps`` (Hu et al., MiniCPM; "WSD schedules")
linear        warmup, then linear decay to ``min_lr_ratio`` at ``max_steps``
============  ==============================================================================
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from .errors import ConfigError
from .registry import Registry

OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("schedule")


@OPTIMIZERS.register("adamw", help="AdamW (decoupled weight decay)")
def _adamw(params, lr, weight_decay, momentum, betas):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)


@OPTIMIZERS.register("adam", help="Adam with L2 weight decay")
def _adam(params, lr, weight_decay, momentum, betas):
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=betas)


@OPTIMIZERS.register("sgd", help="SGD with (optional) momentum")
def _sgd(params, lr, weight_decay, momentum, betas):
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)


@OPTIMIZERS.register("lora_fa", help="LoRA-FA: A frozen, B trained with projected AdamW (PEFT create_lorafa_optimizer)",
                     needs_model=True)
def _lora_fa(model, lr, weight_decay, momentum, betas, rank, alpha, **_):
    from peft.optimizers import create_lorafa_optimizer

    return create_lorafa_optimizer(model, r=rank, lora_alpha=alpha, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("loraplus", help="LoRA+: AdamW with B's lr = loraplus_lr_ratio × A's (PEFT create_loraplus_optimizer)",
                     needs_model=True)
def _loraplus(model, lr, weight_decay, momentum, betas, loraplus_lr_ratio=16.0, **_):
    from peft.optimizers import create_loraplus_optimizer

    opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=loraplus_lr_ratio,
                                    loraplus_weight_decay=weight_decay, betas=betas)
    for group in opt.param_groups:  # each group's lr as a multiple of the run's lr (schedules rescale it per step)
        group["lr_scale"] = group["lr"] / lr
    return opt


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.0, betas: tuple[float, float] = (0.9, 0.999), model: torch.nn.Module | None = None,
                    **options) -> torch.optim.Optimizer:
    """An optimizer from the registry over the trainable ``params``.

    Optimizers registered with ``needs_model=True`` (LoRA-FA, LoRA+: PEFT's constructors group parameters by
    name) get ``model`` and ``options`` (``rank``, ``alpha``, ``loraplus_lr_ratio``) instead of ``params``.
    A param group may carry ``lr_scale``: its lr is ``lr_scale ×`` the run's lr (LoRA+'s B groups).
    """
    entry = OPTIMIZERS.entry(name)
    if entry.meta.get("needs_model"):
        if model is None or not hasattr(model, "peft_config"):
            raise ConfigError(f"Optimizer {name!r} groups a PEFT LoRA model's parameters by name: use it with "
                              "FineTune(method='lora', optimizer=...), or pick adamw/adam/sgd.")
        return entry.obj(model, lr, weight_decay, momentum, tuple(betas), **options)
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("The model has no trainable parameters (every requires_grad is False): nothing to optimize.")
    return entry.obj(params, lr, weight_decay, momentum, tuple(betas))


def _warm(step: int, warmup: int) -> float | None:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return None


@SCHEDULES.register("constant", help="warmup, then constant")
def constant(step, max_steps, warmup, min_lr_ratio, decay_fraction):
    return _warm(step, warmup) or 1.0


@SCHEDULES.register("cosine", help="warmup, then cosine decay")
def cosine(step, max_steps, warmup, min_lr_ratio, decay_fraction):
    w = _warm(step, warmup)
    if w is not None:
        return w
    span = max(1, max_steps - warmup)
    t = min(1.0, (step - warmup) / span)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register("linear", help="warmup, then linear decay")
def linear(step, max_steps, warmup, min_lr_ratio, decay_fraction):
    w = _warm(step, warmup)
    if w is not None:
        return w
    t = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return 1 - (1 - min_lr_ratio) * t


@SCHEDULES.register("wsd", help="warmup-stable-decay")
def wsd(step, max_steps, warmup, min_lr_ratio, decay_fraction):
    w = _warm(step, warmup)
    if w is not None:
        return w
    decay_start = max_steps - int(round(decay_fraction * max_steps))
    if step < decay_start:
        return 1.0
    t = min(1.0, (step - decay_start) / max(1, max_steps - decay_start))
    return 1 - (1 - min_lr_ratio) * t


def lr_factor(schedule: str, step: int, max_steps: int, warmup: int = 0, min_lr_ratio: float = 0.0,
              decay_fraction: float = 0.2) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) under ``schedule``."""
    return float(SCHEDULES.get(schedule)(step, max_steps, warmup, min_lr_ratio, decay_fraction))
