"""``scale``: multiply the current init of the chosen matrices by a factor (the lazy/rich dial of init scale)."""

from __future__ import annotations

import param
import torch

from .base import InitRecipe
from .registry import register


@register("scale", help="multiply the init by `factor` (large → lazy/kernel regime, small → rich)")
class Scale(InitRecipe):
    """W ← factor · W."""

    factor = param.Number(default=1.0, bounds=(0, None), inclusive_bounds=(False, True), softbounds=(0.05, 4.0),
                          doc="Multiplier of the current weights (> 0).")

    def transform(self, w: torch.Tensor, name: str, context: dict) -> torch.Tensor:
        return w * float(self.factor)
