"""Gradient accumulation: one optimizer step over ``grad_accum_steps`` micro-batches of one batch.

``batch_size`` is the *global* batch: the optimizer step sees the gradient of the mean loss over
``batch_size`` examples whatever ``grad_accum_steps`` (and, under DDP, the number of processes) is.
Batch ``i`` stays a pure function of ``(seed, i)``: it is drawn whole, then cut into equal contiguous
micro-batches (under DDP, each rank first takes its rows ``r::world``, :mod:`workbench.distributed`).

Why divide at the end rather than scale each loss: the run's ``forward_backward`` (and every
subclass's: SAM, unlearning) calls ``backward`` itself, so gradients simply *add up* in ``.grad``
over the micro-batches; dividing them by the number of micro-batches afterwards gives the mean of
the micro-batch gradients — with equal-size micro-batches of a per-example-mean loss, the gradient of
the whole batch (exactly so when every example counts the same, as fixed-length text windows without
padding do; a token-mean loss with padding weights micro-batches by example, not by token).

>>> import torch
>>> parts = split({"x": torch.arange(8).reshape(8, 1)}, 4)
>>> [p["x"].flatten().tolist() for p in parts]
[[0, 1], [2, 3], [4, 5], [6, 7]]
>>> check(batch_size=6, grad_accum_steps=4)
Traceback (most recent call last):
...
workbench.errors.ConfigError: batch_size 6 is not divisible by grad_accum_steps 4 (micro-batches of equal size make the accumulated gradient that of the whole batch). Use a batch_size that is a multiple of 4, e.g. 8, or grad_accum_steps 1, 2, 3 or 6.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from .errors import ConfigError


def check(batch_size: int, grad_accum_steps: int, world_size: int = 1) -> None:
    """Refuse a ``batch_size`` that does not split into ``world_size × grad_accum_steps`` equal micro-batches."""
    parts = grad_accum_steps * world_size
    if batch_size % parts == 0:
        return
    fits = [d for d in range(1, batch_size + 1) if batch_size % (d * world_size) == 0]
    what = (f"grad_accum_steps {grad_accum_steps}" if world_size == 1
            else f"grad_accum_steps × processes = {grad_accum_steps} × {world_size} = {parts}")
    options = ", ".join(map(str, fits[:-1])) + f" or {fits[-1]}" if len(fits) > 1 else str(fits[0]) if fits else "none"
    raise ConfigError(f"batch_size {batch_size} is not divisible by {what} (micro-batches of equal size make the "
                      f"accumulated gradient that of the whole batch). Use a batch_size that is a multiple of {parts}, "
                      f"e.g. {parts * max(1, -(-batch_size // parts))}, or grad_accum_steps {options}.")


def split(batch: dict, n: int) -> list[dict]:
    """``batch`` cut into ``n`` equal contiguous micro-batches (rows ``j*m:(j+1)*m``)."""
    rows = int(next(iter(batch.values())).shape[0])
    if rows % n:
        raise ConfigError(f"A batch of {rows} rows cannot be cut into {n} equal micro-batches; make batch_size a "
                          f"multiple of grad_accum_steps ({n}) × processes.")
    m = rows // n
    return [{k: v[j * m:(j + 1) * m] for k, v in batch.items()} for j in range(n)]


def forward_backward(run, batch: dict, n: int,
                     no_sync: Callable[[], contextlib.AbstractContextManager] | None = None) -> tuple[torch.Tensor, dict]:
    """``run.forward_backward`` over ``n`` micro-batches of ``batch``; ``.grad`` ends as their mean gradient.

    Returns the mean loss and the mean of each metric over the micro-batches. ``no_sync`` (DDP's) is
    entered for every micro-batch but the last, so gradients are communicated once per optimizer step.
    """
    if n == 1:
        return run.forward_backward(batch)
    losses, sums = [], {}
    for j, micro in enumerate(split(batch, n)):
        ctx = no_sync() if no_sync is not None and j < n - 1 else contextlib.nullcontext()
        with ctx:
            loss, metrics = run.forward_backward(micro)
        losses.append(loss.detach().float())
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value)
    with torch.no_grad():
        for p in run.model.parameters():
            if p.grad is not None:
                p.grad.div_(n)
    return torch.stack(losses).mean(), {k: v / n for k, v in sums.items()}
