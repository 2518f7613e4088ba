"""``orthogonal``: a (semi-)orthogonal matrix times ``gain`` (``torch.nn.init.orthogonal_``, own generator)."""

from __future__ import annotations

import param
import torch

from .base import InitRecipe, frobenius_rescale
from .registry import register


@register("orthogonal", help="random (semi-)orthogonal matrix × gain")
class Orthogonal(InitRecipe):
    """W ← gain · Q with Q Haar-random (semi-)orthogonal; optionally at the old Frobenius norm."""

    gain = param.Number(default=1.0, bounds=(0, None), inclusive_bounds=(False, True), doc="Multiplier of Q.")
    keep_norm = param.Boolean(default=False, doc="Rescale to the matrix's current Frobenius norm (ignores gain).")

    def prepare(self, model, names, context):
        return {"generator": self.generator()}

    def transform(self, w: torch.Tensor, name: str, context: dict) -> torch.Tensor:
        q = torch.empty_like(w)
        torch.nn.init.orthogonal_(q, gain=float(self.gain), generator=context["generator"])
        return frobenius_rescale(q, w, name) if self.keep_norm else q
