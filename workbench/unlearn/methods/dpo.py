"""DPO as an unlearning baseline (Rafailov et al., 2023, "Direct Preference Optimization"; used for
unlearning in TOFU, NPO and open-unlearning): prefer an *alternate* answer y_w over the forget answer
y_l, relative to the frozen model π_ref.

L_DPO(θ) = −(2/β) · (1/B) Σ_i log σ(β · [(log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x))])
                                                                                         (+ retain_weight · NLL_retain)

with sequence-summed log-probabilities over answer tokens (the (2/β) scale is NPO's and open-unlearning's,
so the loss at θ = θ_ref is (2/β)·ln 2 for every β). Here y_w is the fact's **alternate answer**: the
answer's own template with a wrong value (``alternate_*`` tensors of the forget split, built by
:class:`workbench.unlearn.FactsBenchmark`) — the model is taught a plausible falsehood in place of the
fact. :mod:`.idkdpo` prefers a refusal instead.
"""

from __future__ import annotations

import param
import torch
import torch.nn.functional as F

from ..losses import sequence_logprob
from .base import METHODS, WithRetain


@METHODS.register("dpo", help="DPO: prefer an alternate (wrong-valued) answer over the forget answer, vs π_ref")
class DPO(WithRetain):
    needs_reference = True
    needs_alternate = True
    formula = "L = −(2/β) mean log σ(β[(log π_θ/π_ref)(y_w) − (log π_θ/π_ref)(y_l)]) [+ λ·NLL_retain]"
    chosen = "alternate_"  # prefix of the preferred answer's tensors in the forget batch

    beta = param.Number(default=0.1, bounds=(0, None), inclusive_bounds=(False, True),
                        doc="Inverse temperature β > 0 of the preference margin (the loss is (2/β)·…).")

    def forget_term(self, stage, forget):
        win, _ = sequence_logprob(stage.model, forget, prefix=self.chosen)  # [B]
        lose, _ = sequence_logprob(stage.model, forget)  # [B]
        with torch.no_grad():
            ref_win, _ = sequence_logprob(stage.reference_model, forget, prefix=self.chosen)
            ref_lose, _ = sequence_logprob(stage.reference_model, forget)
        margin = (win - ref_win) - (lose - ref_lose)  # [B]
        loss = -(2.0 / self.beta) * F.logsigmoid(self.beta * margin).mean()
        return loss, {"forget_logp": float(lose.detach().mean()), "chosen_logp": float(win.detach().mean()),
                      "preference_margin": float(margin.detach().mean())}
