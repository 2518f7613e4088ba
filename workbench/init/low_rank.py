"""``low_rank``: SVD-truncate the current init to rank r and rescale to the same Frobenius norm.

This is the connectivity dial of "How connectivity structure shapes rich and lazy learning": a Gaussian
recurrent matrix truncated to rank 1/30/100/300 at equal ‖W‖_F. Low rank biases learning toward the
rich regime, full rank toward the lazy one.
"""

from __future__ import annotations

import param
import torch

from .base import InitRecipe, check_rank, frobenius_rescale, truncate
from .registry import register


@register("low_rank", help="SVD-truncate to rank r, rescaled to the same Frobenius norm")
class LowRank(InitRecipe):
    """W ← ‖W‖_F · W_r / ‖W_r‖_F with W_r the best rank-r approximation of W."""

    rank = param.Integer(default=1, bounds=(1, None), softbounds=(1, 300), doc="Target rank (1 ≤ r ≤ min(out, in)).")

    def transform(self, w: torch.Tensor, name: str, context: dict) -> torch.Tensor:
        check_rank(self.rank, w, name)
        return frobenius_rescale(truncate(w, self.rank), w, name)
