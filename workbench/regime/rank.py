"""Effective rank (Roy & Vetterli) of each selected weight matrix W and of its change ΔW = W − W0."""

from __future__ import annotations

import numpy as np
import param
import torch
import xarray as xr

from ..errors import ConfigError
from ..matrices import weight_matrices
from ..probes import PROBES, Probe
from ..spectra import effective_rank


@PROBES.register("effective_rank", help="effective rank of W and of ΔW per matrix")
class EffectiveRank(Probe):
    """``erank_w`` and ``erank_dw`` over ``matrix`` (ΔW against ``run.reference``; 0 before any change)."""

    include = param.String(default=None, allow_None=True, doc="Regex of canonical matrix names (None: all).")
    exclude = param.String(default=None, allow_None=True, doc="Regex of canonical names to skip.")

    def setup(self, run) -> None:
        self.names = list(weight_matrices(run.model, include=self.include, exclude=self.exclude))
        if not self.names:
            raise ConfigError(f"EffectiveRank: include={self.include!r} exclude={self.exclude!r} matches no weight matrix.")

    @torch.no_grad()
    def measure(self, run) -> dict:
        if run.reference is None:
            run.setup()
        now = weight_matrices(run.model, include=self.include, exclude=self.exclude)
        ew, edw = [], []
        for name in self.names:
            w = now[name].float()
            ew.append(effective_rank(w))
            edw.append(effective_rank(w - run.reference.get(name).to(w.device)))
        coords = {"matrix": self.names}
        return {"erank_w": xr.DataArray(np.asarray(ew), dims=["matrix"], coords=coords),
                "erank_dw": xr.DataArray(np.asarray(edw), dims=["matrix"], coords=coords)}
