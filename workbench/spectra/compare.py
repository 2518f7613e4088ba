"""Two checkpoints, matrix by matrix: what fine-tuning (or any training) did to each weight's spectrum.

For a base W0 and a tuned W (``[out, in]``, fp32) :func:`compare` reports, per matrix:

* ``intruders`` and ``max_cos`` (``rank``): intruder count and the max-|cos| profile of the top-k tuned
  left singular vectors against all base vectors (see :mod:`workbench.spectra.intruders`);
* ``principal_angles`` (``rank``, radians, ascending) between the top-k left singular subspaces of W0
  and W, and ``subspace_overlap`` = mean cos² of those angles (1 = same subspace, ≈ k/m for random ones);
* ``singular_values_base`` / ``singular_values_tuned`` (``index``) and ``singular_value_shift`` = σ_i(W) − σ_i(W0);
* the update ΔW = W − W0: ``delta_singular_values`` (``index``), ``delta_effective_rank``,
  ``delta_stable_rank``, ``delta_numerical_rank``, ``delta_frobenius_norm``, ``delta_spectral_norm``;
* ``effective_rank_base`` / ``effective_rank_tuned``.

One SVD of W0, one of W and one ``svdvals`` of ΔW per matrix, batched by shape.

>>> import torch
>>> q = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(0)))[0]
>>> [round(float(a), 6) for a in principal_angles(q[:, :2], q[:, [1, 0]])]   # same plane
[0.0, 0.0]
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from ..errors import ConfigError
from .core import (_check_finite, effective_rank_sv, group_by_shape, matrices_of, numerical_rank_sv, stable_rank_sv, stack, svd, svdvals,
                   _model_device)
from .intruders import _check_pair, check_intruder_args, max_abs_cos


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between the column spaces of orthonormal ``a [..., m, p]``, ``b [..., m, q]``.

    cos θ_i are the singular values of aᵀb (Björck & Golub 1973); there are min(p, q) angles. Angles below 45°
    come from the sines (singular values of b − a aᵀb) instead, as in ``scipy.linalg.subspace_angles``:
    arccos near 1 would turn fp32 round-off of 1e-7 into an angle of 5e-4.
    """
    if a.shape[-1] < b.shape[-1]:
        a, b = b, a
    b = b.to(a.dtype)
    proj = a.transpose(-2, -1) @ b  # [..., p, q]
    cos = torch.linalg.svdvals(proj).clamp(-1.0, 1.0)  # [..., q], descending → angles ascending
    sin = torch.linalg.svdvals(b - a @ proj).clamp(-1.0, 1.0).flip(-1)  # [..., q], ascending
    return torch.where(cos ** 2 >= 0.5, torch.arcsin(sin), torch.arccos(cos))


def _pad(rows: list[np.ndarray], width: int) -> np.ndarray:
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def compare(base, tuned, k: int = 10, eps: float = 0.5, *, include=None, exclude=None, embeddings: bool = True,
            device=None) -> xr.Dataset:
    """Per-matrix comparison of two checkpoints (models, PEFT models, Snapshots or name → ``[out, in]`` mappings).

    ``k`` sets both the intruder test and the subspace size for principal angles; ``eps`` the intruder
    threshold. Matrices named in both are compared; their shapes must match.

    >>> from workbench import models
    >>> a, b = models.build("gpt2-1m", seed=0), models.build("gpt2-1m", seed=1)
    >>> ds = compare(a, a, embeddings=False)
    >>> int(ds.intruders.sum()), float(ds.subspace_overlap.min()) > 0.999
    (0, True)
    """
    check_intruder_args(k, eps)
    sel = dict(include=include, exclude=exclude)
    b = matrices_of(base, **sel, **({"embeddings": embeddings} if isinstance(base, torch.nn.Module) else {}))
    t = matrices_of(tuned, **sel, **({"embeddings": embeddings} if isinstance(tuned, torch.nn.Module) else {}))
    names = [n for n in t if n in b]
    if not names:
        raise ConfigError("No matrix names in common between base and tuned; compare the same architecture.")
    for n in names:
        _check_pair(b[n], t[n], n)
    dev = torch.device(device) if device is not None else (_model_device(tuned) or t[names[0]].device)
    res: dict[str, dict] = {}
    with torch.no_grad():
        for (shape, _), group in group_by_shape({n: t[n] for n in names}).items():
            w0 = stack(b, group, dev)  # [g, m, n]
            w = stack(t, group, dev).to(w0.dtype)  # [g, m, n]
            _check_finite(w0, f"base matrices {group}")
            _check_finite(w, f"tuned matrices {group}")
            u0, s0, _ = svd(w0)  # [g, m, r], [g, r]
            u, s, _ = svd(w)
            sd = svdvals(w - w0)  # [g, r]
            kk = min(int(k), s.shape[-1])
            cos = max_abs_cos(u[..., :kk], u0)  # [g, kk]
            angles = principal_angles(u0[..., :kk], u[..., :kk])  # [g, kk]
            fro_d = (w - w0).pow(2).sum((-2, -1))
            vals = dict(
                intruders=(cos < eps).sum(-1), effective_rank_base=effective_rank_sv(s0, shape),
                effective_rank_tuned=effective_rank_sv(s, shape), delta_effective_rank=effective_rank_sv(sd, shape),
                delta_stable_rank=stable_rank_sv(sd, fro_d), delta_numerical_rank=numerical_rank_sv(sd, shape),
                delta_frobenius_norm=fro_d.sqrt(), delta_spectral_norm=sd[..., 0],
                subspace_overlap=torch.cos(angles).pow(2).mean(-1))
            vals = {key: v.double().cpu().numpy() for key, v in vals.items()}
            arrays = dict(max_cos=cos, principal_angles=angles, singular_values_base=s0, singular_values_tuned=s,
                          singular_value_shift=s - s0, delta_singular_values=sd)
            arrays = {key: v.double().cpu().numpy() for key, v in arrays.items()}
            for j, n in enumerate(group):
                res[n] = {**{key: v[j] for key, v in vals.items()}, **{key: v[j] for key, v in arrays.items()}}
    width = max(len(res[n]["singular_values_base"]) for n in names)
    data = {key: ("matrix", np.array([res[n][key] for n in names]))
            for key in ("intruders", "effective_rank_base", "effective_rank_tuned", "delta_effective_rank",
                        "delta_stable_rank", "delta_numerical_rank", "delta_frobenius_norm", "delta_spectral_norm",
                        "subspace_overlap")}
    data["intruders"] = ("matrix", data["intruders"][1].astype(np.int64))
    for key in ("max_cos", "principal_angles"):
        data[key] = (("matrix", "rank"), _pad([res[n][key] for n in names], int(k)))
    for key in ("singular_values_base", "singular_values_tuned", "singular_value_shift", "delta_singular_values"):
        data[key] = (("matrix", "index"), _pad([res[n][key] for n in names], width))
    ds = xr.Dataset(data, coords={"matrix": names, "rank": np.arange(int(k)), "index": np.arange(width)},
                    attrs={"k": int(k), "eps": float(eps)})
    ds["principal_angles"].attrs["units"] = "rad"
    return ds


def compare_matrices(base, tuned, k: int = 10, eps: float = 0.5) -> xr.Dataset:
    """:func:`compare` for one pair of 2-D matrices (the result has a single ``matrix`` entry, ``"matrix"``)."""
    return compare({"matrix": base}, {"matrix": tuned}, k, eps)
