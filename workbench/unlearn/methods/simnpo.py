"""SimNPO (Fan et al., 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning"): NPO without a reference model, with length normalization and a margin δ.

L_SimNPO(θ) = −(2/β) · (1/B) Σ_i log σ(−(β/|y_i|) · log π_θ(y_i|x_i) − δ)
            = (2/β) · mean softplus((β/|y_i|) · log π_θ(y_i|x_i) + δ)      (+ retain_weight · NLL_retain)

``|y_i|`` is the number of answer tokens. No π_ref: cheaper, and long answers are not favoured.
"""

from __future__ import annotations

from ..losses import sequence_logprob, softplus
from .base import METHODS, Method


@METHODS.register("simnpo", help="reference-free, length-normalized NPO with margin δ")
class SimNPO(Method):
    name = "simnpo"
    formula = "L = (2/β) mean softplus(β·log π_θ(y|x)/|y| + δ) [+ λ·NLL_retain]"

    def forget_term(self, stage, forget):
        logp, n = sequence_logprob(stage.model, forget)  # [B], [B]
        norm = logp / n.clamp(min=1)
        loss = (2.0 / stage.beta) * softplus(stage.beta * norm + stage.delta).mean()
        return loss, {"forget_logp": float(logp.detach().mean()), "forget_logp_per_token": float(norm.detach().mean())}
