"""WGA — weighted gradient ascent (Wang et al., ICLR 2025, "Rethinking LLM Unlearning Objectives: A
Gradient Perspective and Go Beyond", arXiv:2502.19301).

Gradient ascent on each answer token, weighted by the token's own (detached) probability to the power β:

L_WGA(θ) = (1/N) Σ_{answer tokens t} sg(π_θ(y_t|x, y_<t)^β) · log π_θ(y_t|x, y_<t)      (+ retain_weight · NLL_retain)

(N = answer tokens in the batch; sg = stop-gradient). Tokens the model already finds unlikely get small
weights, so — like NPO, without π_ref — the ascent slows down on what is already forgotten instead of
driving it to −∞. β = 0 is token-averaged gradient ascent, −NLL_forget (tested).
"""

from __future__ import annotations

import param

from ..losses import token_logprobs
from .base import METHODS, WithRetain


@METHODS.register("wga", help="weighted gradient ascent: tokens weighted by their own probability^β (no π_ref)")
class WGA(WithRetain):
    formula = "L = mean_t sg(p_t^β)·log p_t [+ λ·NLL_retain]"

    beta = param.Number(default=1.0, bounds=(0, None), doc="Power β ≥ 0 of the token weight p_t^β (0 = gradient ascent).")

    def forget_term(self, stage, forget):
        logp, mask, _ = token_logprobs(stage.model, forget)  # [B, T-1] (0 off the answers), [B, T-1]
        weight = (self.beta * logp.detach()).exp() * mask  # p_t^β, 0 off the answers
        n = mask.sum().clamp(min=1)
        loss = (weight * logp).sum() / n
        return loss, {"forget_nll": float(-(logp.detach().sum() / n)), "wga_weight": float(weight.sum() / n)}
