"""``gaussian``: i.i.d. N(0, gain²/fan_in) entries — the 1/√N init whose gain sets the regime.

With ``gain = 1.25`` on a ReLU RNN's recurrent matrix this is the authors' setup in "How connectivity
structure shapes rich and lazy learning" (scale 1.25/√N).
"""

from __future__ import annotations

import math

import param
import torch

from .base import InitRecipe
from .registry import register


@register("gaussian", help="i.i.d. Gaussian, std = gain/√fan_in (fan_in = in_features)")
class Gaussian(InitRecipe):
    """W_ij ~ N(0, gain² / fan_in)."""

    gain = param.Number(default=1.0, bounds=(0, None), inclusive_bounds=(False, True), softbounds=(0.1, 3.0),
                        doc="Standard deviation × √fan_in.")

    def prepare(self, model, names, context):
        return {"generator": self.generator()}

    def transform(self, w: torch.Tensor, name: str, context: dict) -> torch.Tensor:
        std = float(self.gain) / math.sqrt(w.shape[1])
        return torch.randn(w.shape, generator=context["generator"], dtype=w.dtype) * std
