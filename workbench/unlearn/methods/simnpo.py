"""SimNPO (Fan et al., 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning"): NPO without a reference model, with length normalization and a margin δ.

L_SimNPO(θ) = −(2/β) · (1/B) Σ_i log σ(−(β/|y_i|) · log π_θ(y_i|x_i) − δ)
            = (2/β) · mean softplus((β/|y_i|) · log π_θ(y_i|x_i) + δ)      (+ retain_weight · NLL_retain)

``|y_i|`` is the number of answer tokens. No π_ref: cheaper, and long answers are not favoured.
"""

from __future__ import annotations

import param

from ..losses import sequence_logprob, softplus
from .base import METHODS, WithRetain


@METHODS.register("simnpo", help="reference-free, length-normalized NPO with margin δ")
class SimNPO(WithRetain):
    formula = "L = (2/β) mean softplus(β·log π_θ(y|x)/|y| + δ) [+ λ·NLL_retain]"

    beta = param.Number(default=0.1, bounds=(0, None), inclusive_bounds=(False, True),
                        doc="Inverse temperature β > 0 (the loss is (2/β)·…).")
    delta = param.Number(default=0.0, doc="Margin δ added inside the softplus.")

    def forget_term(self, stage, forget):
        logp, n = sequence_logprob(stage.model, forget)  # [B], [B]
        norm = logp / n.clamp(min=1)
        loss = (2.0 / self.beta) * softplus(self.beta * norm + self.delta).mean()
        return loss, {"forget_logp": float(logp.detach().mean()), "forget_logp_per_token": float(norm.detach().mean())}
