"""FLAT — Forget data only Loss AdjustmenT (Wang et al., ICLR 2025, "LLM Unlearning via Loss Adjustment
with Only Forget Data", arXiv:2410.11143).

FLAT maximizes the f-divergence between the distribution of template answers ("I don't know", x_e)
and of forget answers (x_f) through its variational form; per batch the loss (paper, Eq. 4) is

L_FLAT(θ) = −g*(P(x_e; θ)) + f*(g*(P(x_f; θ)))

where P(·; θ) is the mean per-token probability of the answer tokens (the paper's implementation) and
(g*, f*) are the activation and conjugate of the chosen f-divergence. Implemented (``f_divergence``):

========  =====================  ======================
f         g*(v)                  f*(t)
========  =====================  ======================
kl        v                      exp(t − 1)
tv        ½·tanh(v)              t
js        log 2 − log(1+e^{−v})  −log(2 − e^t)
pearson   v                      t²/4 + t
========  =====================  ======================

Default ``kl``. Only forget data is used (no retain set): template answers are pushed up, forget answers
down, each re-weighted through f*. One deliberate difference from the reference code: P averages over
answer tokens only, not over the padded length, so the loss does not depend on padding.
"""

from __future__ import annotations

import math

import param
import torch

from ..losses import mean_token_prob
from .base import METHODS, Method

_LOG2 = math.log(2.0)

#: name → (activation g*, conjugate f*)
DIVERGENCES = {
    "kl": (lambda v: v, lambda t: torch.exp(t - 1.0)),
    "tv": (lambda v: 0.5 * torch.tanh(v), lambda t: t),
    "js": (lambda v: _LOG2 - torch.nn.functional.softplus(-v), lambda t: -torch.log(2.0 - torch.exp(t))),
    "pearson": (lambda v: v, lambda t: t * t / 4.0 + t),
}


@METHODS.register("flat", help="f-divergence loss adjustment, forget data + template refusals only")
class FLAT(Method):
    """Forget data and template refusals only: no retain term, no π_ref."""

    needs_refusal = True
    formula = "L = −g*(P(x_e)) + f*(g*(P(x_f)))"

    f_divergence = param.Selector(default="kl", objects=sorted(DIVERGENCES), doc="Which f-divergence (g*, f*).")

    def forget_term(self, stage, forget):
        act, conj = DIVERGENCES[self.f_divergence]
        p_good = mean_token_prob(stage.model, forget, prefix="refusal_")  # [B]
        p_bad = mean_token_prob(stage.model, forget)  # [B]
        loss = -act(p_good).mean() + conj(act(p_bad)).mean()
        return loss, {"p_template": float(p_good.detach().mean()), "p_forget": float(p_bad.detach().mean())}
