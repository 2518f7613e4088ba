"""Gradient ascent: push the log-likelihood of the forget answers down, with nothing to hold it back.

L_GA(θ) = (1/B) Σ_i log π_θ(y_i | x_i)      (sequence-summed over answer tokens; minimized)

Minimizing it is ascent on the forget NLL. It is the limit of NPO as β → 0 and NPO's gradient at
θ = θ_ref. Unbounded below, so the model collapses (utility on everything else falls) if run long.
"""

from __future__ import annotations

from ..losses import sequence_logprob
from .base import METHODS, Method


@METHODS.register("ga", help="gradient ascent on the forget answers")
class GradientAscent(Method):
    """No hyperparameters, no retain term (use 'graddiff'), no π_ref."""

    formula = "L = mean_i log π_θ(y_i|x_i)"

    def forget_term(self, stage, forget):
        logp, n = sequence_logprob(stage.model, forget)  # [B], [B]
        loss = logp.mean()
        return loss, {"forget_logp": float(logp.detach().mean()), "forget_nll": float(-(logp.sum() / n.sum()).detach())}
