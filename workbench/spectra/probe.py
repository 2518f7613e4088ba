"""``SpectraProbe``: track spectra and intruder dimensions of every matrix live, during a run.

Every ``every`` steps it logs, for every weight matrix (dims ``step × matrix`` in the record):
``effective_rank``, ``stable_rank``, ``spectral_norm`` and ``intruders`` (count of intruder dimensions
against the run's reference snapshot W0, ``run.reference``), the scalar ``intruders_total``, and — with
``singular_values=True`` — the whole spectrum (``step × matrix × index``).

Speed: the base's left singular vectors are computed once (:class:`~workbench.spectra.BaseVectors`,
recomputed only if the reference changes); same-shaped matrices go through one batched SVD on the
model's device; with ``method="exact"`` a single SVD per matrix yields both the singular values and the
tuned top-k vectors, with ``method="lowrank"`` the vectors come from a randomized SVD.

>>> from workbench import Run
>>> from workbench.spectra import SpectraProbe
>>> run = Run("gpt2-1m", "stories", probes=[SpectraProbe(every=50)])   # doctest: +SKIP
>>> run.run(100); run.record.intruders.sel(step=100)                    # doctest: +SKIP
"""

from __future__ import annotations

import weakref

import numpy as np
import param
import torch
import xarray as xr

from ..errors import ConfigError
from ..matrices import weight_matrices
from ..probes import PROBES, Probe
from .core import _check_finite, effective_rank_sv, group_by_shape, stable_rank_sv, stack, svd, svdvals, top_singular
from .intruders import METHODS, BaseVectors, check_intruder_args, max_abs_cos


@PROBES.register("spectra", help="effective/stable rank, spectral norm and intruder dimensions of every matrix")
class SpectraProbe(Probe):
    """Per-matrix spectra and intruder counts every ``every`` steps (see module docstring)."""

    k = param.Integer(default=10, bounds=(1, None), doc="Top tuned singular vectors tested for intruders (paper: 10).")
    eps = param.Number(default=0.5, bounds=(0, 1), inclusive_bounds=(False, True),
                       doc="Intruder threshold on max |cos| with any base vector (paper: 0.5).")
    spectra = param.Boolean(default=True, doc="Log effective_rank, stable_rank and spectral_norm.")
    intruders = param.Boolean(default=True, doc="Log intruder counts against run.reference (W0).")
    singular_values = param.Boolean(default=False, doc="Also log every singular value (step × matrix × index).")
    method = param.Selector(default="exact", objects=list(METHODS),
                            doc="Tuned top-k vectors: 'exact' (one full SVD) or 'lowrank' (randomized SVD).")
    niter = param.Integer(default=6, bounds=(0, None), doc="Power iterations of the randomized SVD ('lowrank').")
    oversample = param.Integer(default=32, bounds=(0, None), doc="Extra randomized directions ('lowrank').")
    include = param.String(default="", doc="Regular expression: only matrices whose name matches (empty = all).")
    exclude = param.String(default="", doc="Regular expression: skip matrices whose name matches (empty = none).")
    embeddings = param.Boolean(default=True, doc="Include embedding tables ([vocab, d_model]).")
    prefix = param.String(default="", doc="Prefix of the logged names (to attach two spectra probes to one run).")

    def __init__(self, **params):
        super().__init__(**params)
        if not (self.spectra or self.intruders or self.singular_values):
            raise ConfigError("SpectraProbe has nothing to measure: set spectra, intruders or singular_values to True.")
        self.base_vectors = BaseVectors()
        self._run = None

    @property
    def run(self):
        """The run this probe is attached to (or None)."""
        return self._run() if self._run is not None else None

    def setup(self, run) -> None:
        self._run = weakref.ref(run)

    def names(self, run) -> list[str]:
        return list(self._matrices(run))

    def _matrices(self, run) -> dict[str, torch.Tensor]:
        return weight_matrices(run.model, include=self.include or None, exclude=self.exclude or None,
                               embeddings=self.embeddings)

    @torch.no_grad()
    def measure(self, run) -> dict:
        check_intruder_args(self.k, self.eps, self.method)
        mats = self._matrices(run)
        if not mats:
            raise ConfigError("SpectraProbe matched no weight matrix; loosen include/exclude.")
        ref = run.reference if self.intruders else None
        if self.intruders and ref is None:
            raise ConfigError("SpectraProbe needs run.reference (W0) to count intruders; call run.setup() first "
                              "or pass reference=Snapshot.from_model(model).")
        want_s = self.spectra or self.singular_values
        out: dict[str, dict] = {}
        for (shape, _), group in group_by_shape(mats).items():
            batch = stack(mats, group)  # [g, m, n] fp32 on the model's device
            _check_finite(batch, f"weight matrices {group}")
            s = u = None
            comparable = [n for n in group if ref is not None and n in ref and tuple(ref[n].shape) == shape]
            if self.intruders and comparable and self.method == "exact":
                u, s, _ = svd(batch)  # [g, m, r], [g, r]
                u = u[..., : self.k]
            elif want_s:
                s = svdvals(batch)  # [g, r]
            if self.intruders and comparable and u is None:
                u = top_singular(batch, self.k, self.niter, self.oversample)[0]  # [g, m, k]
            rows = {n: {} for n in group}
            if want_s:
                er = effective_rank_sv(s, shape).tolist()
                sr = stable_rank_sv(s).tolist()
                s_np = s.double().cpu().numpy()
                for j, n in enumerate(group):
                    rows[n].update(effective_rank=er[j], stable_rank=sr[j], spectral_norm=float(s_np[j, 0]), sv=s_np[j])
            if self.intruders and comparable:
                u0 = self.base_vectors.get(ref, comparable, device=batch.device)
                pos = [group.index(n) for n in comparable]
                cos = max_abs_cos(u[pos], torch.stack([u0[n] for n in comparable]))  # [c, k]
                counts = (cos < self.eps).sum(-1).tolist()
                for n, c in zip(comparable, counts):
                    rows[n]["intruders"] = float(c)
            out.update(rows)
        names = list(mats)
        p = self.prefix
        results: dict = {}
        coords = {"matrix": names}
        if self.spectra:
            for key in ("effective_rank", "stable_rank", "spectral_norm"):
                results[p + key] = xr.DataArray(np.array([out[n][key] for n in names]), dims="matrix", coords=coords)
        if self.intruders:
            counts = np.array([out[n].get("intruders", np.nan) for n in names])
            results[p + "intruders"] = xr.DataArray(counts, dims="matrix", coords=coords)
            results[p + "intruders_total"] = float(np.nansum(counts))
        if self.singular_values:
            width = max(len(out[n]["sv"]) for n in names)
            sv = np.full((len(names), width), np.nan)
            for i, n in enumerate(names):
                sv[i, : len(out[n]["sv"])] = out[n]["sv"]
            results[p + "singular_values"] = xr.DataArray(sv, dims=("matrix", "index"),
                                                          coords={"matrix": names, "index": np.arange(width)})
        return results
