"""``SpectraProbe``: track spectra and intruder dimensions of every matrix live, during a run.

Every ``every`` steps it logs, for every weight matrix (dims ``step × matrix`` in the record):
``effective_rank``, ``stable_rank``, ``spectral_norm`` and ``intruders`` (count of intruder dimensions
against the run's reference snapshot W0, ``run.reference``), the scalar ``intruders_total``, and — with
``singular_values=True`` — the spectrum (``step × matrix × index``; what the ESD view histograms).
With ``heavytail=True`` (default) also WeightWatcher's heavy-tailed family (:mod:`~workbench.spectra.heavytail`):
``alpha``, ``alpha_xmin``, ``alpha_ks``, ``num_pl_spikes``, ``alpha_weighted``, ``log_norm``,
``log_spectral_norm``, ``log_alpha_norm``, ``mp_sigma``, ``mp_bulk_max``, ``num_spikes``, ``mp_softrank``, and
the scalar model averages ``alpha_mean`` and ``alpha_weighted_mean``; with ``randomize=True`` also
``rand_distance`` and ``num_traps`` (entries permuted by the probe's own ``torch.Generator``, seeded by ``seed``).

``top_k``: only the top ``top_k`` singular values (:func:`~workbench.spectra.top_singular_values`, Gram matrix
+ Chebyshev filter); ``stable_rank`` stays exact, ``effective_rank`` is NaN (it needs every σ), α is fitted on the
top values and the Marchenko–Pastur bulk comes from the variance (see :mod:`~workbench.spectra.heavytail`).

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


import numpy as np
import param
import torch
import xarray as xr

from ..errors import ConfigError
from ..matrices import weight_matrices
from ..probes import PROBES, Probe
from .core import (_check_finite, effective_rank_sv, frobenius_sq, group_by_shape, stable_rank_sv, stack, svd, svdvals,
                   top_singular)
from .heavytail import FULL_VARS, RANDOM_VARS, heavytail_metrics, permuted
from .topk import top_singular_values
from .intruders import METHODS, BaseVectors, check_intruder_args, max_abs_cos


@PROBES.register("spectra", help="effective/stable rank, spectral norm, heavy-tailed alpha and MP spikes, and "
                                 "intruder dimensions of every matrix")
class SpectraProbe(Probe):
    """Per-matrix spectra and intruder counts every ``every`` steps (see module docstring)."""

    k = param.Integer(default=10, bounds=(1, None), doc="Top tuned singular vectors tested for intruders (paper: 10).")
    eps = param.Number(default=0.5, bounds=(0, 1), inclusive_bounds=(False, True),
                       doc="Intruder threshold on max |cos| with any base vector (paper: 0.5).")
    spectra = param.Boolean(default=True, doc="Log effective_rank, stable_rank, spectral_norm (and the heavy-tailed "
                                              "family with heavytail=True).")
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
    top_k = param.Integer(default=None, bounds=(1, None), allow_None=True,
                          doc="Only the top-k singular values (fast; effective_rank NaN). None: every value.")
    heavytail = param.Boolean(default=True, doc="Log the heavy-tailed family: alpha, log norms, MP bulk and spikes.")
    randomize = param.Boolean(default=False, doc="Also compare each matrix with its entries permuted "
                                                 "(rand_distance, num_traps; one more spectrum per matrix).")
    seed = param.Integer(default=0, doc="Seed of the probe's own generator for the randomized check.")

    def __init__(self, **params):
        super().__init__(**params)
        if not (self.spectra or self.intruders or self.singular_values):
            raise ConfigError("SpectraProbe has nothing to measure: set spectra, intruders or singular_values to True.")
        self.base_vectors = BaseVectors()
        self.generator = torch.Generator().manual_seed(self.seed)  # the probe's own: the global RNG stays untouched

    def setup(self, run) -> None:
        self.generator.manual_seed(self.seed)

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
        tail = self.spectra and self.heavytail
        out: dict[str, dict] = {}
        tops = rand_tops = None
        if want_s and self.top_k is not None:  # one call: same-size Gram matrices share one batched filter
            tops = dict(zip(mats, top_singular_values(list(mats.values()), self.top_k)))
            if tail and self.randomize:
                rand_tops = dict(zip(mats, top_singular_values([permuted(m.detach().unsqueeze(0), self.generator)[0]
                                                                for m in mats.values()], self.top_k)))
        for (shape, _), group in group_by_shape(mats).items():
            batch = stack(mats, group)  # [g, m, n] fp32 on the model's device
            _check_finite(batch, f"weight matrices {group}")
            s = u = None
            comparable = [n for n in group if ref is not None and n in ref and tuple(ref[n].shape) == shape]
            if self.intruders and comparable and self.method == "exact":
                u, s, _ = svd(batch)  # [g, m, r], [g, r]
                u = u[..., : self.k]
            elif want_s and tops is None:
                s = svdvals(batch)  # [g, r]
            if tops is not None:
                s = torch.stack([tops[n] for n in group])  # [g, top_k]
            if self.intruders and comparable and u is None:
                u = top_singular(batch, self.k, self.niter, self.oversample)[0]  # [g, m, k]
            rows = {n: {} for n in group}
            if want_s:
                fro = torch.stack([frobenius_sq(m) for m in batch]) if tops is not None else (s.double() ** 2).sum(-1)
                er = effective_rank_sv(s, shape).tolist() if tops is None else [np.nan] * len(group)
                sr = stable_rank_sv(s.double(), fro.to(s.device)).tolist()
                s_np, fro_np = s.double().cpu().numpy(), fro.double().cpu().numpy()
                rand = None
                if tail and self.randomize:
                    rand = (torch.stack([rand_tops[n] for n in group]) if rand_tops is not None
                            else svdvals(permuted(batch, self.generator))).double().cpu().numpy()
                for j, n in enumerate(group):
                    rows[n].update(effective_rank=er[j], stable_rank=sr[j], spectral_norm=float(s_np[j, 0]), sv=s_np[j])
                    if tail:
                        rows[n].update(heavytail_metrics(s_np[j], *shape, total=fro_np[j], top_k=tops is not None,
                                                         rand_s=None if rand is None else rand[j]))
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
            keys = ("effective_rank", "stable_rank", "spectral_norm")
            if self.heavytail:
                keys += FULL_VARS + (RANDOM_VARS if self.randomize else ())
            for key in keys:
                results[p + key] = xr.DataArray(np.array([out[n][key] for n in names], dtype=float), dims="matrix",
                                                coords=coords)
            if self.heavytail:  # model averages, as WeightWatcher's summary (NaN fits left out)
                for key in ("alpha", "alpha_weighted"):
                    vals = results[p + key].values[np.isfinite(results[p + key].values)]
                    results[p + key + "_mean"] = float(vals.mean()) if vals.size else np.nan
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
