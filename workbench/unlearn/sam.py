"""Sharpness-aware unlearning (Fan et al., 2025, "Towards LLM Unlearning Resilient to Relearning Attacks:
A Sharpness-Aware Minimization Perspective and Beyond").

The forget objective is minimized at the worst nearby point, which flattens the loss landscape around
the unlearned weights so that a few steps of fine-tuning on forget data (a relearning attack) cannot
climb back quickly:

    min_θ  max_{‖ε‖ ≤ ρ} L_f(θ + ε) + L_r(θ)     with the first-order ε* = ρ · ∇L_f(θ) / ‖∇L_f(θ)‖

One SAM step: (1) gradient g of the forget term at θ (not stored in ``.grad``); (2) θ ← θ + ε*;
(3) backward of the forget term at θ + ε* into ``.grad``; (4) restore θ exactly (saved copies, not a
subtraction, so no rounding drift); (5) forward and backward of the retain term at θ, accumulated. With ρ = 0,
ε* = 0 and the result equals :func:`plain_backward` bit for bit (tested).
"""

from __future__ import annotations

from typing import Callable

import torch

from .methods.base import Terms


def _retain(retain_fn, terms: Terms) -> None:
    if retain_fn is None:
        return
    out = retain_fn()
    if out is not None:
        terms.retain, metrics = out
        terms.metrics.update(metrics)
        terms.retain.backward()


def plain_backward(forget_fn: Callable[[], tuple], retain_fn: Callable[[], tuple | None] | None = None) -> Terms:
    """The plain step: forward+backward of the forget term, then of the retain term (SAM's order)."""
    loss, metrics = forget_fn()
    terms = Terms(loss, None, dict(metrics))
    loss.backward()
    _retain(retain_fn, terms)
    return terms


def sam_backward(forget_fn: Callable[[], tuple], retain_fn: Callable[[], tuple | None] | None,
                 params: list[torch.nn.Parameter], rho: float,
                 average: Callable[[list[torch.Tensor]], None] | None = None) -> Terms:
    """SAM on the forget term; returns the terms at θ (for logging) with the gradients left in ``.grad``.

    ``forget_fn()`` / ``retain_fn()`` return ``(loss, metrics)`` at the current weights (a fresh forward
    each call); ``retain_fn`` may be ``None`` or return ``None`` (no retain term). ``average`` (data parallel:
    :func:`workbench.distributed.average`) makes the forget gradient that of the global batch, in place, before
    ε* is taken from it, so every rank perturbs the weights alike.
    """
    params = [p for p in params if p.requires_grad]
    loss, metrics = forget_fn()  # at θ: the logged forget loss
    terms = Terms(loss.detach(), None, dict(metrics))
    grads = torch.autograd.grad(loss, params, allow_unused=True)  # [same shapes as params]
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    if average is not None:
        average(grads)
    norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
    scale = rho / (norm + 1e-12)
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.add_(g * scale.to(g.dtype))
    try:
        perturbed, _ = forget_fn()
        perturbed.backward()
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
    _retain(retain_fn, terms)
    terms.metrics["sam_grad_norm"] = float(norm)
    terms.metrics["sam_forget_perturbed"] = float(perturbed.detach())
    return terms
