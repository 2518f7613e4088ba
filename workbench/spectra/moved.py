"""What moved since W0: one engine for every lab's "what did training do to this matrix".

Fine-tuning (ΔW of the adapted matrices), unlearning (the model before vs after), the rich/lazy probes
(relative weight change, distance from init, effective rank of ΔW) and checkpoint comparisons all call
:func:`what_moved`; the names it returns are the vocabulary of :mod:`workbench.vocabulary`. For each
matrix W of ``current`` and the same matrix W0 of ``reference`` (``[out, in]``, fp32) it computes only the
``variables`` asked for, with at most:

* one SVD of W (``svdvals`` when no singular vectors are needed; top-k vectors by a randomized SVD with
  ``method="lowrank"``),
* one ``svdvals`` of ΔW = W − W0 (only for the ``delta_*`` ranks and spectrum),
* one SVD of W0, cached across calls in a :class:`~workbench.spectra.intruders.BaseVectors` (``cache=``),
  as the live intruder probe does — W0 does not change during a run;

all batched by shape on the model's device. Norms need no SVD at all (what a per-step weight-change probe
pays). Intruders use the algorithm of :mod:`workbench.spectra.intruders` (max |cos| against all of W0's
left singular vectors, below ``eps``); principal angles that of :func:`principal_angles`.

>>> import torch
>>> w0 = {"w": torch.eye(4)}
>>> ds = what_moved(w0, {"w": torch.eye(4) + torch.outer(torch.ones(4), torch.ones(4))},
...                 ["delta_norm", "delta_effective_rank", "intruders"], k=2)
>>> float(ds.delta_norm.sel(matrix="w")), round(float(ds.delta_effective_rank.sel(matrix="w")), 6)
(4.0, 1.0)
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import param
import torch
import xarray as xr

from ..errors import ConfigError
from ..probes import PROBES, Probe
from ..vocabulary import VOCABULARY
from .core import (_check_finite, _model_device, effective_rank_sv, group_by_shape, matrices_of, numerical_rank_sv,
                   stable_rank_sv, stack, svd, svdvals, top_singular)
from .intruders import METHODS, BaseVectors, _check_pair, check_intruder_args, max_abs_cos

NORMS = ("delta_norm", "delta_rel_norm", "distance_from_init", "relative_distance_from_init")
OF_W = ("effective_rank", "stable_rank", "singular_values")
OF_W0 = ("effective_rank_init", "stable_rank_init", "singular_values_init")
OF_DELTA = ("delta_effective_rank", "delta_stable_rank", "delta_numerical_rank", "delta_spectral_norm",
            "delta_singular_values")
TOP_K = ("intruders", "intruders_total", "max_cos", "principal_angles", "subspace_overlap")
VARIABLES = NORMS + OF_W + OF_W0 + ("singular_value_shift",) + OF_DELTA + TOP_K
"""Every variable :func:`what_moved` can compute (the default computes all of them)."""
SCALARS = ("distance_from_init", "relative_distance_from_init", "intruders_total")


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between the column spaces of orthonormal ``a [..., m, p]``, ``b [..., m, q]``.

    cos θ_i are the singular values of aᵀb (Björck & Golub 1973); there are min(p, q) angles. Angles below 45°
    come from the sines (singular values of b − a aᵀb) instead, as in ``scipy.linalg.subspace_angles``:
    arccos near 1 would turn fp32 round-off of 1e-7 into an angle of 5e-4.

    >>> q = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(0)))[0]
    >>> [round(float(a), 6) for a in principal_angles(q[:, :2], q[:, [1, 0]])]   # same plane
    [0.0, 0.0]
    """
    if a.shape[-1] < b.shape[-1]:
        a, b = b, a
    b = b.to(a.dtype)
    proj = a.transpose(-2, -1) @ b  # [..., p, q]
    cos = torch.linalg.svdvals(proj).clamp(-1.0, 1.0)  # [..., q], descending → angles ascending
    sin = torch.linalg.svdvals(b - a @ proj).clamp(-1.0, 1.0).flip(-1)  # [..., q], ascending
    return torch.where(cos ** 2 >= 0.5, torch.arcsin(sin), torch.arccos(cos))


def check_variables(variables) -> tuple[str, ...]:
    """``variables`` as a tuple of known names (``None``: all of :data:`VARIABLES`); ConfigError otherwise."""
    if variables is None:
        return VARIABLES
    if isinstance(variables, str):
        variables = [variables]
    wanted = tuple(dict.fromkeys(variables))
    unknown = [v for v in wanted if v not in VARIABLES]
    if unknown or not wanted:
        raise ConfigError(f"Unknown 'what moved' variable(s) {unknown or '(none given)'}; choose from "
                          f"{', '.join(VARIABLES)} (see workbench.vocabulary).")
    return wanted


def _fro_sq(batch: torch.Tensor) -> torch.Tensor:
    """‖·‖²_F of each matrix of ``[..., m, n]``: fp32 row norms summed in fp64 (a one-pass fp32 sum drifts on big tables).

    Rows run along the contiguous dim (a GPT-2 Conv1D weight is a transposed view: reducing across its
    stride is several times slower).
    """
    rows = batch if batch.stride(-1) == 1 or batch.mT.stride(-1) != 1 else batch.mT
    return torch.linalg.vector_norm(rows, dim=-1).double().pow(2).sum(-1)


def _select(names, include):
    if names is None:
        return include
    wanted = set(names)
    if include is None:
        return lambda n: n in wanted
    from ..matrices import _as_predicate

    inc = _as_predicate(include, True)
    return lambda n: n in wanted and inc(n)


def _pad(rows: list[np.ndarray], width: int) -> np.ndarray:
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def what_moved(reference, current, variables: Iterable[str] | None = None, *, k: int = 10, eps: float = 0.5,
               names=None, include=None, exclude=None, embeddings: bool = True, method: str = "exact",
               niter: int = 6, oversample: int = 32, cache: BaseVectors | None = None, device=None) -> xr.Dataset:
    """Per-matrix comparison of ``current`` (W) against ``reference`` (W0), as an ``xarray.Dataset`` over ``matrix``.

    Parameters
    ----------
    reference, current : models (PEFT models through their effective weights), :class:`~workbench.Snapshot`\\ s
        or mappings name → ``[out, in]`` tensor. Matrices named in both are compared (shapes must match).
    variables : names from :data:`VARIABLES` (default: all); only what they need is computed.
    k, eps : the top-k singular vectors tested for intruders and spanning the subspaces of the principal
        angles; the intruder threshold on max |cos| (the paper: 10 and 0.5).
    names : exactly these matrices (an error names any that is missing); ``include``/``exclude`` (regex or
        predicate) and ``embeddings`` select among them otherwise.
    method : ``"exact"`` (one full SVD of W) or ``"lowrank"`` (W's top-k vectors by a randomized SVD).
    cache : a :class:`BaseVectors` holding W0's SVDs across calls (a probe keeps one); ``device``: where to compute
        (default: ``current``'s).

    Returns
    -------
    The requested variables (dims and meaning in :mod:`workbench.vocabulary`); scalars are 0-d variables;
    ``rank`` runs over the top-k (NaN-padded past min(m, n)), ``index`` over singular values (NaN-padded).
    ``attrs``: ``k``, ``eps``, ``method``.
    """
    want = set(check_variables(variables))
    check_intruder_args(k, eps, method)
    select = dict(include=_select(names, include), exclude=exclude)
    ref = matrices_of(reference, **select, **({"embeddings": embeddings} if isinstance(reference, torch.nn.Module) else {}))
    cur = matrices_of(current, **select, **({"embeddings": embeddings} if isinstance(current, torch.nn.Module) else {}))
    if names is not None:
        for side, mats in (("reference", ref), ("current model", cur)):
            missing = [n for n in names if n not in mats]
            if missing:
                raise ConfigError(f"The {side} has no weight matrix {missing[0]!r} (it has e.g. {list(mats)[:3]}); "
                                  f"pass names of matrices both share, or include=/exclude= patterns.")
        order = list(dict.fromkeys(names))
    else:
        order = [n for n in cur if n in ref]
    if not order:
        raise ConfigError(f"No matrix names in common between the reference ({len(ref)} matrices) and the current "
                          f"weights ({len(cur)}); compare the same architecture, or loosen include/exclude.")
    for n in order:
        _check_pair(ref[n], cur[n], n)
    dev = torch.device(device) if device is not None else (_model_device(current) or cur[order[0]].device)
    need_u = bool(want & set(TOP_K))
    need_s = bool(want & {"effective_rank", "stable_rank", "singular_values", "singular_value_shift"})
    need_s0 = bool(want & {*OF_W0, "singular_value_shift"}) or need_u
    need_sd = bool(want & set(OF_DELTA))
    cache = cache if cache is not None else BaseVectors()
    per: dict[str, dict] = {n: {} for n in order}
    d2_total = n2_total = 0.0
    with torch.no_grad():
        for (shape, _), group in group_by_shape({n: cur[n] for n in order}).items():
            if not (need_u or need_s or need_s0 or need_sd):  # norms only: no stacked copies
                d2 = torch.stack([_fro_sq(cur[n].to(dev, torch.float32) - ref[n].to(dev, torch.float32)) for n in group])
                n2 = torch.stack([cache.frobenius_sq(ref, n, _fro_sq).to(dev) for n in group])  # [g] fp64, cached
            else:
                w = stack(cur, group, dev)  # [g, m, n]
                w0 = stack(ref, group, dev).to(w.dtype)  # [g, m, n]
                _check_finite(w, f"the current matrices {group}")
                _check_finite(w0, f"the reference matrices {group}")
                diff = w - w0
                d2, n2 = _fro_sq(diff), _fro_sq(w0)  # [g] fp64
            vals = {"delta_norm": d2.sqrt(), "delta_rel_norm": torch.where(n2 > 0, (d2 / n2).sqrt(), torch.nan)}
            d2_total, n2_total = d2_total + float(d2.sum()), n2_total + float(n2.sum())
            arrays: dict[str, torch.Tensor] = {}
            u = s = None
            if need_u and method == "exact":
                u, s, _ = svd(w)  # [g, m, r], [g, r]: values and vectors from one SVD
            elif need_u:
                u = top_singular(w, k, niter, oversample)[0]  # [g, m, k]
            if need_s and s is None:
                s = svdvals(w)
            if s is not None:
                vals.update(effective_rank=effective_rank_sv(s, shape), stable_rank=stable_rank_sv(s))
                arrays["singular_values"] = s
            if need_s0:
                base = cache.svd(ref, group, device=w.device)
                u0 = torch.stack([base[n][0] for n in group]).to(w.dtype)  # [g, m, r]
                s0 = torch.stack([base[n][1] for n in group]).to(w.dtype)  # [g, r]
                vals.update(effective_rank_init=effective_rank_sv(s0, shape), stable_rank_init=stable_rank_sv(s0))
                arrays["singular_values_init"] = s0
                if s is not None:
                    arrays["singular_value_shift"] = s - s0
            if need_sd:
                sd = svdvals(diff)  # [g, r]
                vals.update(delta_effective_rank=effective_rank_sv(sd, shape), delta_stable_rank=stable_rank_sv(sd),
                            delta_numerical_rank=numerical_rank_sv(sd, shape), delta_spectral_norm=sd[..., 0])
                arrays["delta_singular_values"] = sd
            if need_u:
                kk = min(int(k), u.shape[-1])
                cos = max_abs_cos(u[..., :kk], u0)  # [g, kk]
                angles = principal_angles(u0[..., :kk], u[..., :kk])  # [g, kk]
                vals.update(intruders=(cos < eps).sum(-1), subspace_overlap=torch.cos(angles).pow(2).mean(-1))
                arrays.update(max_cos=cos, principal_angles=angles)
            vals = {key: v.double().cpu().numpy() for key, v in vals.items()}
            arrays = {key: v.double().cpu().numpy() for key, v in arrays.items()}
            for j, n in enumerate(group):
                per[n].update({key: v[j] for key, v in vals.items()}, **{key: v[j] for key, v in arrays.items()})
    return _dataset(order, per, want, d2_total, n2_total, int(k), float(eps), method)


def _dataset(order, per, want, d2_total, n2_total, k, eps, method) -> xr.Dataset:
    data, coords = {}, {"matrix": order}
    attrs = lambda key: {"long_name": VOCABULARY[key][0], "units": VOCABULARY[key][2]}  # noqa: E731
    for key in VARIABLES:
        if key not in want or key in SCALARS:
            continue
        dims = VOCABULARY[key][1]
        if dims == ("matrix",):
            values = np.array([per[n][key] for n in order], dtype=float)
            values = values.astype(np.int64) if key in ("intruders", "delta_numerical_rank") else values
        else:
            width = k if dims[1] == "rank" else max(len(per[n][key]) for n in order)
            values = _pad([per[n][key] for n in order], width)
            coords[dims[1]] = np.arange(width)
        data[key] = (dims, values, attrs(key))
    if "distance_from_init" in want:
        data["distance_from_init"] = ((), math.sqrt(d2_total), attrs("distance_from_init"))
    if "relative_distance_from_init" in want:
        rel = math.sqrt(d2_total / n2_total) if n2_total > 0 else math.nan
        data["relative_distance_from_init"] = ((), rel, attrs("relative_distance_from_init"))
    if "intruders_total" in want:
        data["intruders_total"] = ((), int(sum(per[n]["intruders"] for n in order)), attrs("intruders_total"))
    return xr.Dataset(data, coords=coords, attrs={"k": k, "eps": eps, "method": method})


@PROBES.register("moved", help="what moved since W0 per matrix: norms, ranks of W and ΔW, intruders, principal angles")
class MovedProbe(Probe):
    """Logs :func:`what_moved` (run.model against ``run.reference``) every ``every`` steps.

    Per-matrix variables become arrays over ``step × matrix`` (``× rank``/``index``), scalars columns over
    ``step``. W0's SVD is computed once and cached (only variables that need it: ``*_init``, intruders,
    angles). The matrices are fixed when the probe is attached: ``names``, else ``include``/``exclude``.
    """

    variables = param.ListSelector(default=["delta_norm", "delta_rel_norm", "delta_effective_rank",
                                            "distance_from_init", "relative_distance_from_init"],
                                   objects=list(VARIABLES), doc="What to log (see workbench.vocabulary).")
    names = param.List(default=None, allow_None=True, item_type=str, doc="Exactly these matrices (canonical names).")
    include = param.String(default=None, allow_None=True, doc="Regex of canonical matrix names (None: all).")
    exclude = param.String(default=None, allow_None=True, doc="Regex of canonical names to skip.")
    embeddings = param.Boolean(default=True, doc="Include embedding tables.")
    k = param.Integer(default=10, bounds=(1, None), doc="Top singular vectors for intruders and principal angles.")
    eps = param.Number(default=0.5, bounds=(0, 1), inclusive_bounds=(False, True), doc="Intruder threshold on max |cos|.")
    method = param.Selector(default="exact", objects=list(METHODS), doc="W's top-k vectors: full SVD or randomized.")

    def __init__(self, **params):
        super().__init__(**params)
        if not self.variables:
            raise ConfigError(f"{type(self).__name__} has nothing to measure: give variables=[...] from {', '.join(VARIABLES)}.")
        self.base_vectors = BaseVectors()
        self.matrices: list[str] = []

    def setup(self, run) -> None:
        from ..matrices import weight_matrices

        found = list(weight_matrices(run.model, include=_select(self.names, self.include), exclude=self.exclude,
                                     embeddings=self.embeddings))
        if not found:
            raise ConfigError(f"{type(self).__name__}: names={self.names!r} include={self.include!r} "
                              f"exclude={self.exclude!r} matches no weight matrix; loosen the selection.")
        self.matrices = found

    def measure(self, run) -> dict:
        if run.reference is None:
            run.setup()
        ds = what_moved(run.reference, run.model, self.variables, k=self.k, eps=self.eps, names=self.matrices or None,
                        include=self.include, exclude=self.exclude, embeddings=self.embeddings, method=self.method,
                        cache=self.base_vectors)
        return {key: (ds[key] if ds[key].dims else ds[key].item()) for key in self.variables}
