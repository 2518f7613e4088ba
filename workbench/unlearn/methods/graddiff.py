"""GradDiff: gradient ascent on the forget set plus gradient descent on the retain set.

L(θ) = (1/B) Σ_i log π_θ(y_i | x_i)  +  retain_weight · NLL_retain(θ)

(``NLL_retain``: mean next-token cross-entropy over the retain answers.) The retain term slows the
collapse of gradient ascent but does not bound the forget term.
"""

from __future__ import annotations

import param

from ..losses import sequence_logprob
from .base import METHODS, WithRetain


@METHODS.register("graddiff", help="gradient ascent on forget + descent on retain")
class GradDiff(WithRetain):
    formula = "L = mean_i log π_θ(y_i|x_i) + λ·NLL_retain"

    retain_weight = param.Number(default=1.0, bounds=(0, None), inclusive_bounds=(False, True),
                                 doc="Weight λ > 0 of the retain term (GradDiff is GA plus it; for none use method='ga').")

    def forget_term(self, stage, forget):
        logp, n = sequence_logprob(stage.model, forget)
        return logp.mean(), {"forget_logp": float(logp.detach().mean()), "forget_nll": float(-(logp.sum() / n.sum()).detach())}
