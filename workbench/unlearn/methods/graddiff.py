"""GradDiff: gradient ascent on the forget set plus gradient descent on the retain set.

L(θ) = (1/B) Σ_i log π_θ(y_i | x_i)  +  retain_weight · NLL_retain(θ)

(``NLL_retain``: mean next-token cross-entropy over the retain answers.) The retain term slows the
collapse of gradient ascent but does not bound the forget term.
"""

from __future__ import annotations

from ...errors import ConfigError
from ..losses import sequence_logprob
from .base import METHODS, Method


@METHODS.register("graddiff", help="gradient ascent on forget + descent on retain")
class GradDiff(Method):
    name = "graddiff"
    formula = "L = mean_i log π_θ(y_i|x_i) + λ·NLL_retain"

    def needs_retain(self, stage) -> bool:
        if stage.retain_weight <= 0:
            raise ConfigError("GradDiff needs retain_weight > 0 (it is gradient ascent plus a retain term); "
                              "set retain_weight=1.0 or use method='ga'.")
        return True

    def forget_term(self, stage, forget):
        logp, n = sequence_logprob(stage.model, forget)
        return logp.mean(), {"forget_logp": float(logp.detach().mean()), "forget_nll": float(-(logp.sum() / n.sum()).detach())}
