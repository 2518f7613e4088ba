"""Negative Preference Optimization (Zhang et al., 2024, "Negative Preference Optimization: From
Catastrophic Collapse to Effective Unlearning").

L_NPO(θ) = (2/β) · (1/B) Σ_i log(1 + (π_θ(y_i|x_i) / π_ref(y_i|x_i))^β)
         = (2/β) · mean softplus(β · (log π_θ − log π_ref))      (+ retain_weight · NLL_retain if > 0)

with sequence-summed log-probabilities and π_ref the frozen model before unlearning. At θ = θ_ref the
loss is (2/β)·ln 2 and its gradient is exactly gradient ascent's; away from it the per-example weight
2·σ(β·Δ) shrinks as the forget answer becomes unlikely, so it collapses exponentially slower than GA.
"""

from __future__ import annotations

import param
import torch

from ..losses import sequence_logprob, softplus
from .base import METHODS, WithRetain


@METHODS.register("npo", help="negative preference optimization (optional retain term)")
class NPO(WithRetain):
    needs_reference = True
    formula = "L = (2/β) mean log(1 + (π_θ/π_ref)^β) [+ λ·NLL_retain]"

    beta = param.Number(default=0.1, bounds=(0, None), inclusive_bounds=(False, True),
                        doc="Inverse temperature β > 0 (the loss is (2/β)·…; β → 0 is gradient ascent).")

    def forget_term(self, stage, forget):
        logp, _ = sequence_logprob(stage.model, forget)  # [B]
        with torch.no_grad():
            ref_logp, _ = sequence_logprob(stage.reference_model, forget)  # [B]
        log_ratio = logp - ref_logp
        loss = (2.0 / self.beta) * softplus(self.beta * log_ratio).mean()
        return loss, {"forget_logp": float(logp.detach().mean()), "log_ratio": float(log_ratio.detach().mean())}
