"""Shared helpers of the regime probes: parameter selection, probe batches, functional calls."""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.func import functional_call

from ..errors import ConfigError


def select_params(model: nn.Module, params) -> list[str]:
    """Parameter names of ``model`` chosen by ``params``: a list of exact names, a regex, or ``None`` (all trainable)."""
    named = dict(model.named_parameters())
    if params is None:
        names = [n for n, p in named.items() if p.requires_grad]
    elif isinstance(params, str):
        try:
            pattern = re.compile(params)
        except re.error as exc:
            raise ConfigError(f"params={params!r} is not a valid regular expression ({exc}).") from None
        names = [n for n in named if pattern.search(n)]
        if not names:
            raise ConfigError(f"params={params!r} matches no parameter of {type(model).__name__}; "
                              f"its parameters: {', '.join(list(named)[:20])}.")
    else:
        names = list(params)
        missing = [n for n in names if n not in named]
        if missing or not names:
            raise ConfigError(f"Parameter(s) {missing or '(none given)'} do not exist in {type(model).__name__}; "
                              f"its parameters: {', '.join(list(named)[:20])}. Pass exact names or a regex.")
    return names


def probe_batch(run_or_data, batch, n_examples: int, split: str = "val") -> dict:
    """A fixed probe batch: ``batch`` as given (validated against the data), or the first ``n_examples`` of ``split``."""
    data = getattr(run_or_data, "data", run_or_data)
    if batch is None:
        if data is None:
            raise ConfigError("No probe batch: pass batch={'x': ..., 'y': ...} or attach the probe to a run with data.")
        src = data.splits.get(split) or data.train
        return src.take(range(min(n_examples, len(src))))
    if isinstance(batch, torch.Tensor):
        batch = {"x": batch}
    if not isinstance(batch, dict) or not batch or not all(isinstance(v, torch.Tensor) for v in batch.values()):
        raise ConfigError(f"A probe batch must be a dict of tensors (e.g. {{'x': ..., 'y': ...}}), got {type(batch).__name__}.")
    if data is not None:
        for key, ref in data.train.tensors.items():
            got = batch.get(key)
            if got is not None and (tuple(got.shape[1:]) != tuple(ref.shape[1:]) or got.is_floating_point() != ref.is_floating_point()):
                raise ConfigError(f"The probe batch {key} has per-example shape {tuple(got.shape[1:])} ({got.dtype}) but the "
                                  f"run's data has {tuple(ref.shape[1:])} ({ref.dtype}); build the batch from the same task.")
    return dict(batch)


def check_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run the model once on ``x`` (no grad) and turn a shape failure into a clear error."""
    try:
        with torch.no_grad():
            return model(x)
    except (RuntimeError, IndexError, ValueError) as exc:
        raise ConfigError(f"The model cannot run on the probe batch x of shape {tuple(x.shape)}: {exc}. "
                          "Give a batch shaped like the training inputs.") from None


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class Bound:
    """``model`` called with some parameters replaced (``torch.func.functional_call``); looks like the model to a loss."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor]):
        self.model, self.params = model, params

    def __call__(self, *args, **kwargs):
        return functional_call(self.model, self.params, args, kwargs)
