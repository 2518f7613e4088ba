"""IdkDPO: DPO whose preferred answer is a refusal ("I don't know.") — TOFU's and open-unlearning's
"IdkDPO" baseline.

L_IdkDPO(θ) = −(2/β) · mean_i log σ(β · [(log π_θ/π_ref)(y_idk|x) − (log π_θ/π_ref)(y_i|x)])   (+ retain_weight · NLL_retain)

y_idk is the fact's template refusal (``refusal_*`` tensors, the same ones FLAT uses); everything else
is :class:`.dpo.DPO` (same β, same (2/β)·ln 2 at θ = θ_ref).
"""

from __future__ import annotations

from .base import METHODS
from .dpo import DPO


@METHODS.register("idkdpo", help="DPO preferring a refusal ('I don't know.') over the forget answer, vs π_ref")
class IdkDPO(DPO):
    needs_alternate = False
    needs_refusal = True
    formula = "L = −(2/β) mean log σ(β[(log π_θ/π_ref)(y_idk) − (log π_θ/π_ref)(y)]) [+ λ·NLL_retain]"
    chosen = "refusal_"
