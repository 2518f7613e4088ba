"""Checking a run's saved state section by section, so that loading it is all or nothing.

:meth:`workbench.Run.load_state_dict` first *stages* every section with the helpers below — the
config checked against the declared parameters, the model's names and shapes compared, the optimizer
state loaded into a scratch optimizer, the RNG streams, history and reference parsed — and only then
changes the run. A damaged section raises :class:`~workbench.errors.CorruptFileError` naming it, and the
run is exactly as it was.

Also here: :func:`check_positions`, the construction-time check that the data's windows fit the model.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import param
import torch
from torch import nn

from .errors import ConfigError, CorruptFileError
from .history import History
from .rng import RunRNG
from .snapshot import Snapshot

#: sections every ``Run.state_dict()`` has (subclasses add their own keys)
SECTIONS = ("step", "config", "model", "optimizer", "rng", "history", "run_id")


def damaged(section: str, detail: str) -> CorruptFileError:
    return CorruptFileError(f"The run state's {section} section is damaged ({detail}); nothing was changed. Load an "
                            "intact checkpoint (or the state_dict() of a run of the same model).")


def check_sections(state) -> None:
    if not isinstance(state, dict):
        raise damaged("top-level", f"expected a dict, got {type(state).__name__}")
    missing = [s for s in SECTIONS if s not in state]
    if missing:
        raise damaged(", ".join(missing), "missing")
    if isinstance(state["step"], bool) or not isinstance(state["step"], int) or state["step"] < 0:
        raise damaged("step", f"expected a whole number ≥ 0, got {state['step']!r}")


def check_config(run, config) -> dict:
    """The restorable part of ``config`` (declared, not read-only, not hardware), validated without setting it."""
    if not isinstance(config, dict):
        raise damaged("config", f"expected a dict, got {type(config).__name__}")
    keep = {k: v for k, v in config.items()
            if k in run.param and k not in run.STATE_PARAMS and k not in run.NOT_RESTORED}
    try:
        keep = run.config_values(keep)
    except (ValueError, TypeError) as exc:  # ConfigError is a ValueError
        raise damaged("config", str(exc)) from None
    fields = {k: copy.copy(run.param[k]) for k in keep}
    try:  # a throwaway Parameterized with copies of the parameters: param validates each value
        type("ConfigCheck", (param.Parameterized,), fields)(**keep)
    except (ValueError, TypeError) as exc:
        raise damaged("config", str(exc)) from None
    for k, v in keep.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise damaged("config", f"{k} = {v}")
    return keep


def shape_difference(want: dict, have: dict, source: str = "state") -> str:
    """What differs between two name → shape maps (``want`` saved in a ``source``, ``have`` this model's), in words."""
    missing = [k for k in want if k not in have][:3]
    extra = [k for k in have if k not in want][:3]
    shapes = [f"{k}: {want[k]} vs {have[k]}" for k in want if k in have and want[k] != have[k]][:3]
    return "; ".join(x for x in [f"missing in this model {missing}" if missing else "",
                                  f"not in the {source} {extra}" if extra else "",
                                  f"different shapes {shapes}" if shapes else ""] if x)


def check_model(model: nn.Module, weights) -> None:
    """Same names and shapes as ``model.state_dict()``; a clear error naming the first differences."""
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise damaged("model", "expected a dict of tensors")
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in weights.items()}
    if have == want:
        return
    detail = shape_difference(want, have)
    raise CorruptFileError(f"The state is from a different model ({detail}); nothing was changed. Load it into the "
                           "model it was saved from.")


def staged_optimizer(run, config: dict, optim_state) -> torch.optim.Optimizer:
    """A new optimizer over ``run.model`` (built as ``config`` says) holding ``optim_state``, fully checked."""
    settings = {k: config.get(k, getattr(run, k)) for k in ("optimizer", "lr", "weight_decay", "momentum")}
    opt = run.build_torch_optimizer(**settings)
    try:
        opt.load_state_dict(copy.deepcopy(optim_state))  # never share tensors with the caller's dict
    except Exception as exc:  # torch raises ValueError/KeyError/TypeError/RuntimeError for damaged states
        raise damaged("optimizer", f"{type(exc).__name__}: {exc}") from None
    params = [p for g in opt.param_groups for p in g["params"]]
    for p in params:
        for key, value in opt.state.get(p, {}).items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != p.shape:
                raise damaged("optimizer", f"{key} has shape {tuple(value.shape)} for a parameter of shape "
                                           f"{tuple(p.shape)}")
    return opt


@dataclass
class Staged:
    """A run state checked section by section, ready to apply."""

    step: int
    config: dict
    optimizer: torch.optim.Optimizer
    rng: RunRNG
    history: History
    reference: Snapshot | None
    wall_time: float


def stage(run, state) -> Staged:
    """Check every section of ``state`` against ``run`` (its device already resolved) without changing the run."""
    check_sections(state)
    config = check_config(run, state["config"])
    check_model(run.model, state["model"])
    optimizer = staged_optimizer(run, config, state["optimizer"])
    rng = RunRNG.from_state_dict(state["rng"])
    history = History()
    try:
        history.load_state_dict(state["history"])
    except Exception as exc:
        raise damaged("history", f"{type(exc).__name__}: {exc}") from None
    try:
        reference = None if state.get("reference") is None else Snapshot.from_state_dict(state["reference"])
    except Exception as exc:
        raise damaged("reference", f"{type(exc).__name__}: {exc}") from None
    if not isinstance(state.get("run_id"), str):
        raise damaged("run_id", f"expected a string, got {state.get('run_id')!r}")
    wall_time = state.get("wall_time")
    wall_time = float(wall_time) if isinstance(wall_time, (int, float)) else float(history.latest("wall_time", 0.0))
    return Staged(state["step"], config, optimizer, rng, history, reference, wall_time)


def positions(model: nn.Module) -> int | None:
    """How many token positions ``model`` has (``n_positions``/``max_position_embeddings``), if it says."""
    config = getattr(model, "config", None)
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_positions(model: nn.Module, data) -> None:
    """Refuse data whose windows are longer than the model's positions (else: an IndexError at the first step)."""
    limit = positions(model)
    ids = data.train.tensors.get("input_ids") if hasattr(data, "train") else None
    if limit is None or ids is None or ids.ndim < 2 or ids.shape[1] <= limit:
        return
    raise ConfigError(f"The data's windows are {ids.shape[1]} tokens long (block_size) but the model has only {limit} "
                      f"positions. Load the data with block_size ≤ {limit} (e.g. data.load({data.name!r}, "
                      f"block_size={limit})) or build a model with more positions (n_positions).")
