"""Sharded data-parallel runs (``strategy="fsdp"``) on torch's FSDP2, ``torch.distributed.fsdp.fully_shard``.

Under FSDP every rank holds only its 1/W slice of each parameter, gradient and optimizer state (as
``DTensor`` shards along dim 0); a block's full weights exist only while it runs forward or backward.
What the run still guarantees — the same as ``ddp`` (:mod:`workbench.distributed`): ``batch_size`` is the
global batch, sharded ``r::W`` over the ranks; gradients are averaged (FSDP's reduce-scatter), so the loss
trajectory equals one process's with the same global batch up to fp32 rounding.

How the run uses it, all through torch's own APIs (nothing here re-implements a collective):

* :func:`shard` applies ``fully_shard`` to every transformer block (the class names a Hugging Face model
  lists in ``_no_split_modules``, as ``accelerate``'s FSDP auto-wrap does) and then to the whole model, so
  one block is gathered at a time. The W0 snapshot is taken *before* sharding (full weights); an
  optimizer that already holds state (a resumed run) is rebuilt over the sharded parameters and its state
  loaded into them (``set_optimizer_state_dict``).
* :func:`full_weights` — FSDP2's ``unshard()`` on every sharded module: inside it the model's parameters
  are the full, plain tensors, so probes (spectra, intruders, ΔW, eval loss) see exactly what one process
  would. It is a collective: **under FSDP every rank runs the probes** (each gathers, measures the same
  numbers; only rank 0 writes). :class:`workbench.probes.Probe` enters it around ``measure``.
* :func:`model_state` / :func:`optimizer_state` — the *full* state gathered on rank 0 with
  ``torch.distributed.checkpoint.state_dict`` (``full_state_dict=True, cpu_offload=True``), the optimizer's
  converted to the plain ``optimizer.state_dict()`` layout (parameters numbered in group order), so a
  checkpoint is the same file whatever the strategy and resumes under any world size or strategy.

>>> import torch
>>> is_sharded(torch.nn.Linear(2, 2))
False
>>> with full_weights(torch.nn.Linear(2, 2)) as m:   # a no-op for a model that is not sharded
...     type(m).__name__
'Linear'
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable

import torch
from torch import nn

from .errors import ConfigError


def _fsdp_modules(model: nn.Module) -> list[nn.Module]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def is_sharded(model: nn.Module) -> bool:
    """Whether ``fully_shard`` has been applied to ``model`` (its parameters are DTensor shards)."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without FSDP2
        return False
    return isinstance(model, FSDPModule)


def class_name(model: nn.Module) -> str:
    """The model's own class name (FSDP2 makes a sharded model an instance of ``FSDP<Name>``; this says ``<Name>``)."""
    if is_sharded(model):
        from torch.distributed.fsdp import FSDPModule

        return next(c for c in type(model).__mro__[1:] if not issubclass(c, FSDPModule)).__name__
    return type(model).__name__


def block_classes(model: nn.Module) -> set[str]:
    """Class names of the model's transformer blocks (HF ``_no_split_modules``; under PEFT, of its base)."""
    base = getattr(model, "get_base_model", None)
    hf = base() if callable(base) else model
    return set(getattr(hf, "_no_split_modules", None) or ())


def check_available() -> None:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        raise ConfigError(f"strategy='fsdp' needs torch.distributed.fsdp.fully_shard (FSDP2, torch ≥ 2.6); torch "
                          f"{torch.__version__} has none. Upgrade torch or use strategy='ddp'.") from None


def _names(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def _indexed_to_named(state: dict, names: list[str]) -> dict:
    """A plain ``optimizer.state_dict()`` (parameters numbered 0..n-1 in group order) keyed by parameter name."""
    ids = [i for g in state["param_groups"] for i in g["params"]]
    to_name = dict(zip(ids, names))
    return {"state": {to_name[i]: s for i, s in state["state"].items()},
            "param_groups": [{**g, "params": [to_name[i] for i in g["params"]]} for g in state["param_groups"]]}


def _named_to_indexed(state: dict) -> dict:
    """The inverse: a name-keyed optimizer state (torch.distributed.checkpoint's) numbered in group order."""
    order = [n for g in state["param_groups"] for n in g["params"]]
    index = {n: i for i, n in enumerate(order)}
    return {"state": {index[n]: s for n, s in state["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]}


def _group_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    names = _names(model)
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]


def shard(model: nn.Module, optimizer: torch.optim.Optimizer | None,
          build_optimizer: Callable[[], torch.optim.Optimizer]) -> torch.optim.Optimizer | None:
    """``fully_shard`` every block of ``model`` and the model itself (in place, on the process group's mesh).

    ``fully_shard`` replaces the parameters, so an existing ``optimizer`` cannot be kept: its state is
    carried into a new one from ``build_optimizer()`` over the sharded parameters (returned; None when
    there was none).
    """
    check_available()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    from torch.distributed.fsdp import fully_shard

    saved = None
    if optimizer is not None and optimizer.state:  # a fresh optimizer (no state yet) is simply rebuilt
        saved = _indexed_to_named(copy.deepcopy(optimizer.state_dict()), _group_names(model, optimizer))
    classes = block_classes(model)
    for module in list(model.modules()):
        if module is not model and type(module).__name__ in classes:
            fully_shard(module)
    fully_shard(model)
    if saved is None:
        return None if optimizer is None else build_optimizer()
    new = build_optimizer()
    set_optimizer_state_dict(model, new, saved, options=StateDictOptions(full_state_dict=True))
    return new


@contextlib.contextmanager
def full_weights(model: nn.Module):
    """Inside: ``model``'s parameters are its full, plain weights (FSDP2 ``unshard()``); resharded on exit.

    A collective under FSDP — every rank must enter it — and a no-op for a model that is not sharded. A
    forward pass inside keeps the weights gathered (``reshard_after_forward`` is off meanwhile).
    """
    modules = _fsdp_modules(model) if is_sharded(model) else []
    for m in modules:
        m.unshard()
        m.set_reshard_after_forward(False)
    try:
        yield model
    finally:
        for m in modules:
            m.set_reshard_after_forward(True)
            m.reshard()


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's full ``state_dict`` on the CPU: gathered on rank 0 under FSDP (a collective; other ranks
    get ``{}``), a detached copy otherwise."""
    if not is_sharded(model):
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's full state in the plain ``optimizer.state_dict()`` layout (rank 0 only under FSDP)."""
    if not is_sharded(model):
        return copy.deepcopy(optimizer.state_dict())
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    state = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return _named_to_indexed(state) if state else {}


def plain(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value as a plain tensor (FSDP's gradient norm); other tensors unchanged."""
    full = getattr(t, "full_tensor", None)
    return full() if callable(full) else t


def no_sync(model: nn.Module):
    """FSDP2's counterpart of DDP's ``no_sync``: a context factory that skips the gradient reduce-scatter
    (gradients accumulate unsharded until the last micro-batch); None for a model that is not sharded."""
    if not is_sharded(model):
        return None

    @contextlib.contextmanager
    def ctx():
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    return ctx
