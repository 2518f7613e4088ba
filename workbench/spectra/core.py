"""Singular spectra of weight matrices: ranks, norms, a power-law tail exponent, and whole-model tables.

Every function takes a 2-D tensor (or anything ``torch.as_tensor`` accepts); fp16/bf16 inputs are
upcast to fp32 before the SVD (LAPACK and cuSOLVER have no half-precision SVD, and half precision
would round the small singular values away). fp64 stays fp64. Work happens on the tensor's device.

Definitions (σ the singular values, descending):

* effective rank (Roy & Vetterli 2007): p_i = σ_i / Σσ, erank = exp(−Σ p_i ln p_i); 0 for a zero matrix;
* stable rank: Σσ² / σ_max² = ‖W‖_F² / ‖W‖_2²; 0 for a zero matrix;
* numerical rank: #{σ_i > tol}, tol = σ_max · max(m, n) · eps(dtype) (numpy's ``matrix_rank``);
* alpha: the exponent of a power law p(λ) ∝ λ^(−α) fitted to the tail of the eigenvalues λ = σ² of
  WᵀW — see :func:`fit_power_law` (the WeightWatcher estimator).

:func:`model_spectra` analyses every matrix of a model (:func:`workbench.matrices.weight_matrices`:
canonical names, ``[out, in]``, Conv1D transposed, PEFT effective weights) with one batched spectrum call
per distinct shape, on the model's device.

>>> import torch
>>> effective_rank(torch.eye(4))
4.0
>>> stable_rank(torch.diag(torch.tensor([2.0, 1.0])))
1.25
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..errors import ConfigError
from ..matrices import weight_matrices
from .eig import gram_singular_values
from .heavytail import FULL_VARS, LONG_NAMES, RANDOM_VARS, PowerLawFit, fit_power_law, heavytail_metrics, permuted
from .topk import compute_dtype, tall, top_singular_values


# ---------------------------------------------------------------------------------------------- inputs
def as_matrix(x, name: str = "matrix") -> torch.Tensor:
    """``x`` as a 2-D floating tensor for an SVD: half precision and integers upcast to fp32, fp64 kept.

    Raises :class:`~workbench.errors.ConfigError` for anything that is not a 2-D array.
    """
    if isinstance(x, nn.Module):
        raise ConfigError(f"{name} must be a 2-D tensor, got a {type(x).__name__} module; "
                          f"pass module.weight, or use model_spectra()/intruder_dimensions() for whole models.")
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"{name} must be a 2-D tensor or array, got {type(x).__name__}: {exc}") from None
    x = x.detach()
    if x.ndim != 2:
        raise ConfigError(f"{name} must be 2-D (a [out, in] weight matrix), got shape {tuple(x.shape)}; "
                          f"reshape it (e.g. conv kernels to [out, in*kh*kw]) first.")
    if x.numel() == 0:
        raise ConfigError(f"{name} is empty (shape {tuple(x.shape)}); a spectrum needs at least one entry.")
    if x.is_complex():
        raise ConfigError(f"{name} is complex ({x.dtype}); only real weight matrices are supported.")
    if x.dtype != torch.float64:
        x = x.to(torch.float32)
    _check_finite(x, name)
    return x


def _check_finite(s: torch.Tensor, what: str) -> None:
    if not torch.isfinite(s).all():
        raise ConfigError(f"{what} contains NaN or inf entries; spectra of non-finite weights are undefined "
                          f"(the run probably diverged — load an earlier checkpoint).")


# ---------------------------------------------------------------------------------------------- spectra
def singular_values(matrix) -> torch.Tensor:
    """All singular values of ``matrix``, descending (fp32, or fp64 for fp64 input), on its device."""
    m = as_matrix(matrix)
    return svdvals(m)


def effective_rank_sv(s: torch.Tensor, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """Effective rank from singular values ``s`` of shape ``[..., r]`` (batched; 0 where all σ are 0).

    With the matrix ``shape``, singular values at or below :func:`rank_tolerance` (SVD round-off of exact
    zeros) count as 0, so an exactly rank-r matrix with equal σ gives exactly r. The entropy is summed in fp64.
    """
    if shape is not None:
        s = torch.where(s > rank_tolerance(s, shape).unsqueeze(-1), s, torch.zeros_like(s))
    s = s.double()
    total = s.sum(-1, keepdim=True)  # [..., 1]
    p = s / total.clamp_min(torch.finfo(s.dtype).tiny)  # [..., r]
    entropy = -torch.special.xlogy(p, p).sum(-1)  # [...]
    return torch.where(total.squeeze(-1) > 0, entropy.exp(), torch.zeros_like(entropy))


def stable_rank_sv(s: torch.Tensor, frobenius_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Stable rank Σσ²/σ_max² from ``s`` ``[..., r]`` (descending); ``frobenius_sq`` replaces Σσ² if given."""
    top = s[..., 0] ** 2
    fro = (s ** 2).sum(-1) if frobenius_sq is None else frobenius_sq
    return torch.where(top > 0, fro / top.clamp_min(torch.finfo(s.dtype).tiny), torch.zeros_like(top))


def rank_tolerance(s: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """numpy ``matrix_rank``'s default tolerance σ_max · max(m, n) · eps for ``s`` ``[..., r]``."""
    return s[..., 0] * max(shape) * torch.finfo(s.dtype).eps


def numerical_rank_sv(s: torch.Tensor, shape: tuple[int, int], tol: float | None = None) -> torch.Tensor:
    """Number of singular values above ``tol`` (default :func:`rank_tolerance`), batched over ``[..., r]``."""
    t = rank_tolerance(s, shape) if tol is None else torch.full_like(s[..., 0], float(tol))
    return (s > t.unsqueeze(-1)).sum(-1)


def effective_rank(matrix) -> float:
    """Roy & Vetterli's effective rank exp(H(σ/Σσ)) of a 2-D matrix (0.0 for the zero matrix).

    >>> import torch
    >>> effective_rank(torch.ones(3, 5))  # rank one
    1.0
    """
    m = as_matrix(matrix)
    return float(effective_rank_sv(singular_values(m), tuple(m.shape)))


def stable_rank(matrix) -> float:
    """Stable rank ‖W‖_F² / ‖W‖_2² of a 2-D matrix (0.0 for the zero matrix).

    >>> import torch
    >>> stable_rank(torch.eye(3))
    3.0
    """
    return float(stable_rank_sv(singular_values(matrix)))


def numerical_rank(matrix, tol: float | None = None) -> int:
    """Rank of ``matrix``: singular values above ``tol`` (default σ_max · max(m, n) · eps, as numpy).

    >>> import torch
    >>> numerical_rank(torch.outer(torch.arange(1.0, 4.0), torch.ones(5)))
    1
    """
    m = as_matrix(matrix)
    return int(numerical_rank_sv(singular_values(m), tuple(m.shape), tol))


# ---------------------------------------------------------------------------------------------- alpha
def power_law_alpha(matrix) -> float:
    """Tail exponent α of the eigenvalues σ² of ``matrix`` (see :func:`fit_power_law`)."""
    return fit_power_law(singular_values(matrix).double() ** 2).alpha


# ---------------------------------------------------------------------------------------------- batching
def group_by_shape(matrices: Mapping[str, torch.Tensor]) -> dict[tuple, list[str]]:
    """Names grouped by (shape, device): each group is one batched SVD call."""
    groups: dict[tuple, list[str]] = {}
    for name, m in matrices.items():
        groups.setdefault((tuple(m.shape), m.device), []).append(name)
    return groups


def stack(matrices: Mapping[str, torch.Tensor], names: list[str], device=None) -> torch.Tensor:
    """``[len(names), m, n]`` fp32 (fp64 if any input is fp64) stack on ``device``."""
    dtype = torch.float64 if any(matrices[n].dtype == torch.float64 for n in names) else torch.float32
    dev = device if device is not None else matrices[names[0]].device
    return torch.stack([matrices[n].detach().to(device=dev, dtype=dtype) for n in names])


def svdvals(batch: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Singular values of ``[..., m, n]`` or of a list of same-shaped matrices (fp32 or fp64), descending, as
    √eig(WᵀW) of the tall orientation.

    :func:`~workbench.spectra.eig.gram_singular_values`: one GEMM pass over W and an r × r eigensolve instead
    of LAPACK's SVD of W (~3× less time on GPT-2-small); matrices too ill-conditioned for an fp32 Gram matrix
    are redone in fp64, so every σ stays within ~2e-5 relative (or ~1e-7·σ_max absolute) of the SVD's.
    """
    return gram_singular_values(batch)


def svd(batch: torch.Tensor):
    """Thin SVD ``(U [..., m, r], S [..., r], Vh [..., r, n])`` of ``[..., m, n]``, computed on the tall orientation."""
    if batch.shape[-2] < batch.shape[-1]:
        u, s, vh = torch.linalg.svd(batch.mT, full_matrices=False)  # Wᵀ = U S Vh  ⇒  W = Vhᵀ S Uᵀ
        return vh.mT, s, u.mT
    return torch.linalg.svd(batch, full_matrices=False)


def top_singular(batch: torch.Tensor, k: int, niter: int = 6, oversample: int = 32):
    """Randomized top-``k`` SVD of a batch ``[b, m, n]`` (``torch.svd_lowrank``, Halko et al. 2011).

    Returns ``(U [b, m, k], S [b, k], V [b, n, k])``. ``oversample`` extra directions and ``niter`` power
    iterations make the top-k values accurate even for the flat spectra of freshly initialized
    weights (the error is measured in ``benchmarks/bench_spectra.py``).
    """
    r = min(batch.shape[-2:])
    k = min(int(k), r)
    q = min(k + int(oversample), r)
    if q >= r or 2 * q >= r:  # a randomized sketch this wide saves nothing: do it exactly
        u, s, vh = svd(batch)
        return u[..., :k], s[..., :k], vh[..., :k, :].transpose(-2, -1)
    u, s, v = torch.svd_lowrank(batch, q=q, niter=int(niter))
    return u[..., :k], s[..., :k], v[..., :k]


def matrices_of(model_or_matrices, **select) -> dict[str, torch.Tensor]:
    """Named ``[out, in]`` matrices of a model (via ``weight_matrices``), a Snapshot or a mapping."""
    if isinstance(model_or_matrices, nn.Module):
        return weight_matrices(model_or_matrices, **select)
    if hasattr(model_or_matrices, "matrices") and isinstance(model_or_matrices.matrices, Mapping):  # Snapshot
        mats = dict(model_or_matrices.matrices)
    elif isinstance(model_or_matrices, Mapping):
        mats = {k: v for k, v in model_or_matrices.items() if getattr(v, "ndim", 0) == 2}
    else:
        raise ConfigError(f"Expected a torch model, a Snapshot or a mapping name → 2-D tensor, got "
                          f"{type(model_or_matrices).__name__}.")
    if select:
        from ..matrices import _as_predicate

        inc = _as_predicate(select.get("include"), True)
        exc = _as_predicate(select.get("exclude"), False)
        mats = {k: v for k, v in mats.items() if inc(k) and not exc(k)}
    return {k: torch.as_tensor(v) for k, v in mats.items()}


def frobenius_sq(matrix: torch.Tensor) -> torch.Tensor:
    """‖W‖_F² accumulated in fp64 over fp32 row norms, without a copy of W.

    A single fp32 reduction over the 38.6M entries of GPT-2's embedding was off by 5e-3; row norms of a few
    thousand entries are exact to fp32 round-off.
    """
    rows = matrix if matrix.stride(-1) == 1 or matrix.mT.stride(-1) != 1 else matrix.mT  # reduce along contiguous dim
    return torch.linalg.vector_norm(rows, dim=-1, dtype=torch.float32).double().pow(2).sum()


def _model_device(model) -> torch.device | None:
    if isinstance(model, nn.Module):
        p = next(model.parameters(), None)
        return p.device if p is not None else None
    return None


def model_spectra(model, *, include=None, exclude=None, embeddings: bool = True, top_k: int | None = None,
                  oversample: int = 16, degrees=(4, 6), precision: str = "auto", tol: float = 1e-3, device=None,
                  alpha: bool = True, randomize: bool = False, generator: torch.Generator | None = None) -> xr.Dataset:
    """Spectra of every weight matrix of ``model``, one batched call per distinct shape.

    Parameters
    ----------
    model : a torch model (PEFT models through their effective weights), a :class:`~workbench.Snapshot`, or a
        mapping name → ``[out, in]`` tensor.
    include, exclude : regular expression or predicate on canonical names; ``embeddings``: keep embedding tables.
    top_k : ``None`` computes every singular value (:func:`svdvals`: √eig(WᵀW), fp64 where fp32 does not resolve
        the spectrum; within 5e-5 of an SVD). An integer computes only
        the top ``top_k`` from the Gram matrix by Chebyshev-filtered subspace iteration
        (:func:`~workbench.spectra.topk.top_singular_values`: one filter round per entry of ``degrees`` on a
        ``top_k + oversample``-wide block; ``precision`` "auto" multiplies by W in bf16 where that is native;
        ``tol`` the relative error left at which the filter stops).
        ``spectral_norm`` is then the top value, ``frobenius_norm`` and ``stable_rank`` stay exact
        (Σσ² = ‖W‖_F²); ``effective_rank`` and ``numerical_rank`` need the whole spectrum and are NaN; the
        heavy-tailed family is computed from the top values (:mod:`~workbench.spectra.heavytail`: α fitted on the
        top k, the MP bulk from the variance instead of a fit of the bulk's density).
    device : where to compute (default: the model's device).
    alpha : compute the heavy-tailed family — α and its fit, the norm metrics, the Marchenko–Pastur bulk
        (``heavytail.FULL_VARS``; a few ms per matrix on the CPU).
    randomize : also compare each matrix with its entries permuted (``rand_distance``, ``num_traps``): one more
        spectrum per matrix. ``generator``: the CPU ``torch.Generator`` for the permutations (default: seed 0).

    Returns
    -------
    ``xarray.Dataset`` with ``singular_values`` (``matrix``, ``index``; NaN-padded, descending) and per matrix
    ``effective_rank``, ``stable_rank``, ``spectral_norm``, ``frobenius_norm``, ``alpha``, ``alpha_xmin``,
    ``numerical_rank``, the heavy-tailed family (``alpha``, ``alpha_xmin``, ``alpha_ks``, ``num_pl_spikes``,
    ``alpha_weighted``, ``log_norm``, ``log_spectral_norm``, ``log_alpha_norm``, ``mp_sigma``, ``mp_bulk_max``,
    ``num_spikes``, ``mp_softrank``; with ``randomize`` also ``rand_distance``, ``num_traps``); coords
    ``rows``/``cols`` give each matrix's ``[out, in]`` shape.

    >>> from workbench import models
    >>> ds = model_spectra(models.build("gpt2-1m"), embeddings=False)
    >>> ds.singular_values.dims, int(ds.sizes["matrix"])
    (('matrix', 'index'), 16)
    """
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ConfigError(f"top_k must be a whole number ≥ 1 (or None for the full spectrum), got {top_k!r}.")
    select = dict(include=include, exclude=exclude)
    if isinstance(model, nn.Module):
        select["embeddings"] = embeddings
    mats = matrices_of(model, **select)
    if not mats:
        raise ConfigError("No 2-D weight matrices matched; loosen include/exclude or check the model.")
    dev = torch.device(device) if device is not None else _model_device(model)
    names = list(mats)
    per: dict[str, dict] = {}
    used = None
    with torch.no_grad():
        if randomize and generator is None:
            generator = torch.Generator().manual_seed(0)
        if top_k is not None:  # one call for all matrices: same-size Gram matrices share one batched filter
            tensors = {n: m.detach() if dev is None else m.detach().to(dev) for n, m in mats.items()}
            first = next(iter(tensors.values()))
            used = compute_dtype(precision, first.device, torch.float64 if first.dtype == torch.float64 else torch.float32)
            kw = dict(oversample=oversample, degrees=degrees, precision=precision, tol=tol)
            tops = dict(zip(tensors, top_singular_values(list(tensors.values()), top_k, **kw)))
            if randomize and alpha:
                shuffled = [permuted(t.unsqueeze(0), generator)[0] for t in tensors.values()]
                rand_tops = dict(zip(tensors, top_singular_values(shuffled, top_k, **kw)))
                del shuffled
        for (shape, _), group in group_by_shape(mats).items():
            rand = None
            if top_k is None:
                # no stacked copy: each matrix's Gram matrix is formed from the weight itself (NaN/inf show on
                # its diagonal), and Σσ² = ‖W‖_F² comes from the eigenvalues
                dtype = torch.float64 if any(mats[n].dtype == torch.float64 for n in group) else torch.float32
                s = svdvals([mats[n].detach().to(device=dev, dtype=dtype) for n in group])  # [b, r]
                fro_sq = s.double().pow(2).sum(-1)  # [b]
                erank = effective_rank_sv(s, shape).tolist()
                nrank = numerical_rank_sv(s, shape).tolist()
                if randomize and alpha:
                    rand = svdvals(permuted(stack(mats, group, dev), generator)).double().cpu().numpy()
            else:
                s = torch.stack([tops[n] for n in group])  # [b, k]
                fro_sq = torch.stack([frobenius_sq(tensors[n]) for n in group]).to(s.dtype)  # [b]
                erank = nrank = [math.nan] * len(group)
                if randomize and alpha:
                    rand = torch.stack([rand_tops[n] for n in group]).double().cpu().numpy()
            srank = stable_rank_sv(s, fro_sq).tolist()
            s_cpu = s.double().cpu().numpy()
            fro_cpu = fro_sq.double().cpu().numpy()
            for j, name in enumerate(group):
                tail = (heavytail_metrics(s_cpu[j], *shape, total=fro_cpu[j], top_k=top_k is not None,
                                          rand_s=None if rand is None else rand[j]) if alpha else {})
                per[name] = dict(sv=s_cpu[j], effective_rank=erank[j], stable_rank=srank[j],
                                 spectral_norm=float(s_cpu[j][0]), frobenius_norm=float(np.sqrt(fro_cpu[j])),
                                 numerical_rank=float(nrank[j]), rows=shape[0], cols=shape[1], **tail)
    width = max(len(p["sv"]) for p in per.values())
    sv = np.full((len(names), width), np.nan)
    for i, name in enumerate(names):
        sv[i, : len(per[name]["sv"])] = per[name]["sv"]
    scalar = lambda key: ("matrix", np.array([per[n].get(key, math.nan) for n in names], dtype=float))  # noqa: E731
    family = FULL_VARS + (RANDOM_VARS if randomize else ())
    ds = xr.Dataset(
        {"singular_values": (("matrix", "index"), sv),
         **{key: scalar(key) for key in ("effective_rank", "stable_rank", "spectral_norm", "frobenius_norm",
                                         "numerical_rank") + family}},
        coords={"matrix": names, "index": np.arange(width),
                "rows": ("matrix", [per[n]["rows"] for n in names]), "cols": ("matrix", [per[n]["cols"] for n in names])},
        attrs={"method": "full" if top_k is None else (f"Chebyshev-filtered subspace iteration on the Gram matrix (top_k={top_k}, "
                                                       f"oversample={oversample}, degrees={tuple(degrees)}, "
                                                       f"precision={precision}: {used}; steep spectra redone in "
                                                       f"fp32 or by the exact SVD)"),
               "alpha_estimator": "power-law MLE on eigenvalues σ², xmin by minimal KS distance (WeightWatcher's)"
                                  + ("; fitted on the top-k eigenvalues" if top_k is not None else ""),
               "mp_method": "fit" if top_k is None else "variance"},
    )
    for key in family:
        ds[key].attrs["long_name"] = LONG_NAMES[key]
    ds["effective_rank"].attrs["long_name"] = "effective rank exp(H(σ/Σσ))"
    ds["stable_rank"].attrs["long_name"] = "stable rank ‖W‖_F²/‖W‖_2²"
    return ds


def spectra_table(ds: xr.Dataset, columns: Iterable[str] = ("rows", "cols", "effective_rank", "stable_rank",
                                                              "spectral_norm", "alpha", "num_spikes",
                                                              "numerical_rank")):
    """The per-matrix columns of a :func:`model_spectra` result as a pandas DataFrame indexed by ``matrix``."""
    import pandas as pd

    cols = [c for c in columns if c in ds.variables and ds[c].dims == ("matrix",)]
    return pd.DataFrame({c: ds[c].values for c in cols}, index=pd.Index(ds["matrix"].values, name="matrix"))
