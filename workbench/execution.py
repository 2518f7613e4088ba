"""How a run executes its model in a training step: activation checkpointing, ``torch.compile``, DDP.

:func:`training_module` returns the module a run's loss is computed through (``run.forward_model``).
``run.model`` itself is never replaced: weights, probes, snapshots and checkpoints always see the plain
model, and the wrappers share its parameters:

* ``activation_checkpointing`` — Hugging Face's ``gradient_checkpointing_enable()`` (non-reentrant
  ``torch.utils.checkpoint``): activations are recomputed in the backward pass, trading ~30 % more
  compute for much less memory. Only models that implement it (``transformers`` models) can.
* ``strategy="ddp"`` — ``torch.nn.parallel.DistributedDataParallel`` over the process group the
  launcher (``torchrun``) set up (:mod:`workbench.distributed`); gradients are averaged across ranks.
  (``strategy="fsdp"`` wraps nothing: FSDP2 shards ``run.model`` itself, :mod:`workbench.fsdp`.)
* ``compile`` — ``torch.compile`` of the (possibly DDP-wrapped) module, as PyTorch recommends for DDP.
  The first steps are slow (compilation); a failure to compile says so and how to turn it off.

>>> import torch
>>> check_checkpointing(torch.nn.Linear(2, 2), True)
Traceback (most recent call last):
...
workbench.errors.ConfigError: activation_checkpointing needs a model with gradient_checkpointing_enable() (a Hugging Face transformers model); Linear has none. Set activation_checkpointing=False.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ConfigError


def _hf(model: nn.Module) -> nn.Module:
    """The Hugging Face model itself (under a PEFT wrapper, its base model)."""
    base = getattr(model, "get_base_model", None)
    return base() if callable(base) else model


def _names(model: nn.Module) -> tuple[str, str, str] | None:
    """(enable, disable, is-on) method names: transformers ≥ 5 says ``activation_checkpointing_*``, older ``gradient_*``."""
    for enable, disable, state in (("activation_checkpointing_enable", "activation_checkpointing_disable",
                                    "is_activation_checkpointing"),
                                   ("gradient_checkpointing_enable", "gradient_checkpointing_disable",
                                    "is_gradient_checkpointing")):
        if callable(getattr(type(model), enable, None)):
            return enable, disable, state
    return None


def check_checkpointing(model: nn.Module, wanted: bool) -> None:
    """Refuse ``activation_checkpointing`` for a model that cannot do it (before anything changes)."""
    if not wanted:
        return
    model = _hf(model)
    if _names(model) is None or getattr(model, "supports_gradient_checkpointing", True) is False:
        raise ConfigError(f"activation_checkpointing needs a model with gradient_checkpointing_enable() (a Hugging Face "
                          f"transformers model); {type(model).__name__} has none. Set activation_checkpointing=False.")


def is_checkpointing(model: nn.Module) -> bool:
    """Whether ``model`` recomputes its activations in backward (Hugging Face activation checkpointing)."""
    model = _hf(model)
    names = _names(model)
    return bool(names and getattr(model, names[2], False))


def set_checkpointing(model: nn.Module, wanted: bool) -> None:
    """Turn Hugging Face activation checkpointing on or off (checked first)."""
    check_checkpointing(model, wanted)
    model = _hf(model)
    names = _names(model)
    if wanted and not is_checkpointing(model):
        kwargs = {"use_reentrant": False}  # non-reentrant: works with frozen inputs (LoRA) and keeps dropout's RNG
        if names[0].startswith("activation"):
            getattr(model, names[0])(activation_checkpointing_kwargs=kwargs)
        else:
            getattr(model, names[0])(gradient_checkpointing_kwargs=kwargs)
        if getattr(getattr(model, "config", None), "use_cache", False):
            model.config.use_cache = False  # a KV cache is useless in training and HF warns at every forward
    elif not wanted and is_checkpointing(model):
        getattr(model, names[1])()


def check_compile(wanted: bool) -> None:
    """Refuse ``compile`` where torch cannot compile (dynamo unsupported on this Python/platform)."""
    if wanted and not torch._dynamo.is_dynamo_supported():
        raise ConfigError(f"compile=True needs torch.compile, which torch {torch.__version__} does not support on this "
                          "Python/platform. Set compile=False.")


class CompiledForwardError(ConfigError):
    """``torch.compile`` could not compile the model on this machine."""


class _Compiled(nn.Module):
    """A compiled module whose compilation failure becomes a ConfigError saying how to turn it off."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.compiled = torch.compile(module)
        object.__setattr__(self, "uncompiled", module)  # a plain reference (not a second registered submodule)

    def forward(self, *args, **kwargs):
        try:
            return self.compiled(*args, **kwargs)
        except torch._dynamo.exc.BackendCompilerFailed as exc:
            raise CompiledForwardError(f"torch.compile could not compile the model on this machine ({exc.inner_exception!r}"
                                       "); set compile=False (a C++ compiler is needed for the CPU backend).") from exc


def training_module(model: nn.Module, device: torch.device, activation_checkpointing: bool = False,
                    compile: bool = False, ddp: bool = False) -> nn.Module:
    """The module a training step runs ``forward`` through (``model`` itself when nothing applies)."""
    set_checkpointing(model, activation_checkpointing)
    check_compile(compile)
    module = model
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
        module = DistributedDataParallel(model, device_ids=ids)
    if compile:
        module = _Compiled(module)
    return module


def no_sync(module: nn.Module):
    """The context factory that skips gradient communication for ``module``: DDP's ``no_sync``, FSDP2's
    ``set_requires_gradient_sync(False)`` (:func:`workbench.fsdp.no_sync`); None for a plain module."""
    from . import fsdp

    inner = module.uncompiled if isinstance(module, _Compiled) else module
    return inner.no_sync if hasattr(inner, "no_sync") else fsdp.no_sync(inner)
