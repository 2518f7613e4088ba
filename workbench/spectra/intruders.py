"""Intruder dimensions: new high-ranking singular vectors of a tuned matrix that the base never had.

From "LoRA vs Full Fine-tuning: An Illusion of Equivalence" (Shuttleworth et al. 2024), as in the
authors' code and PEFT's ``peft.tuners.lora.intruders``: with U0 the left singular vectors of the base
W0 and Ut those of the tuned W (both ``[out, in]``, SVD in fp32), for each of the top-``k`` tuned vectors
j, m_j = max_i |Ut[:, j] · U0[:, i]| over *all* base vectors; j is an intruder iff m_j < ``eps``.
The absolute value matters: singular vectors are defined up to sign.

Live tracking reuses the base's vectors: :class:`BaseVectors` computes U0 once per matrix (batched by
shape) and keeps it until the reference tensor changes; the tuned side needs only its top-k vectors
(exact, or randomized with ``method="lowrank"``).

>>> import torch
>>> w0 = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(0)))[0] @ torch.diag(torch.linspace(1, 0.1, 32))
>>> intruder_dimensions(w0, 2 * w0)          # rescaling adds no new direction
0
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np
import torch
import xarray as xr

from ..errors import ConfigError
from .core import as_matrix, group_by_shape, matrices_of, stack, svd, top_singular

METHODS = ("exact", "lowrank")


class Intruders(NamedTuple):
    """Result of :func:`find_intruders` for one matrix.

    ``indices`` are positions among the tuned matrix's singular vectors (0 = largest σ); ``max_cos[j]``
    is m_j; ``u [m, k]``, ``s [k]``, ``vh [k, n]`` are the tuned top-k singular triplets, so the intruder
    part of the tuned matrix is ``u[:, I] @ diag(s[I]) @ vh[I]`` (see :func:`intruder_component`).
    """

    count: int
    indices: list[int]
    max_cos: torch.Tensor
    u: torch.Tensor
    s: torch.Tensor
    vh: torch.Tensor


def check_intruder_args(k, eps, method: str = "exact") -> None:
    """Validate ``k`` (whole number ≥ 1), ``eps`` (in (0, 1]) and ``method``; raise ConfigError otherwise."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k (how many top tuned singular vectors to test) must be a whole number ≥ 1, got {k!r}.")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or not (0 < float(eps) <= 1):
        raise ConfigError(f"eps (the |cosine| threshold) must be in (0, 1], got {eps!r}; the paper uses 0.5.")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}.")


def _check_pair(base: torch.Tensor, tuned: torch.Tensor, name: str = "") -> None:
    if base.shape != tuned.shape:
        where = f" for matrix {name!r}" if name else ""
        raise ConfigError(f"base and tuned shapes differ{where}: {tuple(base.shape)} vs {tuple(tuned.shape)}; "
                          f"intruders compare the same matrix before and after tuning (exclude= it if the "
                          f"shape changed on purpose, e.g. after vocabulary expansion).")


def left_singular_vectors(matrix) -> torch.Tensor:
    """All left singular vectors ``U [m, min(m, n)]`` of ``matrix`` (fp32 SVD), columns by descending σ."""
    return svd(as_matrix(matrix))[0]


def max_abs_cos(tuned_u: torch.Tensor, base_u: torch.Tensor) -> torch.Tensor:
    """m_j = max_i |tuned_u[:, j] · base_u[:, i]|; batched over leading dims: ``[..., m, k], [..., m, r] → [..., k]``."""
    return (tuned_u.transpose(-2, -1) @ base_u.to(tuned_u.dtype)).abs().amax(-1)


def tuned_top_k(batch: torch.Tensor, k: int, method: str = "exact", niter: int = 6, oversample: int = 32):
    """Top-``k`` singular triplets of a batch ``[b, m, n]``: ``(U [b, m, k], S [b, k], Vh [b, k, n])``."""
    k = min(k, *batch.shape[-2:])
    if method == "lowrank":
        u, s, v = top_singular(batch, k, niter, oversample)
        return u, s, v.transpose(-2, -1)
    u, s, vh = svd(batch)
    return u[..., :k], s[..., :k], vh[..., :k, :]


def find_intruders(base, tuned, k: int = 10, eps: float = 0.5, *, base_u: torch.Tensor | None = None,
                   method: str = "exact", niter: int = 6, oversample: int = 32) -> Intruders:
    """Intruder dimensions of ``tuned`` relative to ``base`` (two ``[out, in]`` matrices of the same shape).

    ``k`` is clamped to min(m, n). ``base_u`` (the base's left singular vectors, e.g. from
    :class:`BaseVectors`) skips the base SVD. ``method="lowrank"`` finds the tuned top-k with a
    randomized SVD (fast for large matrices; exactness measured in the benchmark).

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> w0 = torch.randn(64, 48, generator=g) / 8
    >>> x, y = torch.randn(64, generator=g), torch.randn(48, generator=g)
    >>> res = find_intruders(w0, w0 + 10 * torch.outer(x / x.norm(), y / y.norm()))  # a strong new direction
    >>> res.count, res.indices
    (1, [0])
    """
    check_intruder_args(k, eps, method)
    b, t = as_matrix(base, "base"), as_matrix(tuned, "tuned")
    _check_pair(b, t)
    t = t.to(b.dtype)
    u0 = left_singular_vectors(b) if base_u is None else base_u.to(device=t.device, dtype=t.dtype)
    u, s, vh = (x[0] for x in tuned_top_k(t[None], int(k), method, niter, oversample))
    m = max_abs_cos(u, u0)  # [k]
    idx = torch.nonzero(m < eps).flatten().tolist()
    return Intruders(len(idx), idx, m, u, s, vh)


def intruder_component(result: Intruders) -> torch.Tensor:
    """The intruder part Σ_{j ∈ I} σ_j u_j v_jᵀ of the tuned matrix (``[out, in]``; zeros if none).

    PEFT's mitigation replaces W by W + (λ − 1) · this (λ = 0.75 by default).
    """
    i = result.indices
    return (result.u[:, i] * result.s[i]) @ result.vh[i]


class BaseVectors:
    """Cache of the reference matrices' SVDs (left singular vectors U0 and values S0), computed once, batched by shape.

    ``get(matrices)`` returns ``{name: U0}`` and ``svd(matrices)`` ``{name: (U0, S0)}``; an entry is recomputed
    only when the reference tensor for its name is a different object (a new Snapshot, or a replaced matrix)
    or is wanted on another device.
    """

    def __init__(self, device=None):
        self.device = torch.device(device) if device is not None else None
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # name → (reference tensor, U0, S0)
        self._norms: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name → (reference tensor, ‖W0‖²_F)
        self.computed = 0  # how many base SVDs were run (tests check the cache works)

    def svd(self, reference: Mapping[str, torch.Tensor], names=None, device=None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{name: (U0 [m, r], S0 [r])}`` for ``names`` (default: all of ``reference``)."""
        names = list(reference) if names is None else list(names)
        dev = torch.device(device) if device is not None else self.device
        missing = [n for n in names
                   if n not in self._cache or self._cache[n][0] is not reference[n]
                   or (dev is not None and self._cache[n][1].device != dev)]
        if missing:
            sub = {n: reference[n] for n in missing}
            for (_shape, _), group in group_by_shape(sub).items():
                batch = stack(sub, group, dev)  # [b, m, n]
                u, s, _ = svd(batch)  # [b, m, r], [b, r]
                for j, n in enumerate(group):
                    self._cache[n] = (reference[n], u[j], s[j])
                self.computed += len(group)
        return {n: self._cache[n][1:] for n in names}

    def frobenius_sq(self, reference: Mapping[str, torch.Tensor], name: str, compute) -> torch.Tensor:
        """‖W0‖²_F of ``reference[name]`` as ``compute(W0)`` gives it, kept until that tensor is replaced."""
        hit = self._norms.get(name)
        if hit is None or hit[0] is not reference[name]:
            hit = self._norms[name] = (reference[name], compute(reference[name].float()))
        return hit[1]

    def get(self, reference: Mapping[str, torch.Tensor], names=None, device=None) -> dict[str, torch.Tensor]:
        """``{name: U0}`` (the left singular vectors only)."""
        return {n: u for n, (u, _) in self.svd(reference, names, device).items()}

    def clear(self) -> None:
        self._cache.clear()
        self._norms.clear()

    def __len__(self) -> int:
        return len(self._cache)


def intruder_profile(base: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor], k: int = 10,
                     eps: float = 0.5, *, method: str = "exact", cache: BaseVectors | None = None, device=None,
                     niter: int = 6, oversample: int = 32) -> xr.Dataset:
    """Per-matrix intruder counts and max-|cos| profiles for two named sets of ``[out, in]`` matrices.

    Returns a Dataset with ``intruders`` (``matrix``; int counts) and ``max_cos`` (``matrix``, ``rank``;
    NaN past a matrix's min(m, n)). Matrices are those named in both; shapes must match. Same-shaped
    matrices share one SVD call; base vectors come from ``cache`` when given. This is
    :func:`workbench.spectra.moved.what_moved` restricted to those two variables (one implementation).
    """
    from .moved import what_moved

    return what_moved(base, tuned, ("intruders", "max_cos"), k=k, eps=eps, method=method, cache=cache, device=device,
                      niter=niter, oversample=oversample)


def intruder_dimensions(base, tuned, k: int = 10, eps: float = 0.5, *, method: str = "exact", include=None,
                        exclude=None, embeddings: bool = True):
    """Number of intruder dimensions of ``tuned`` relative to ``base``.

    Two 2-D tensors give an ``int`` in [0, k]. Two models (PEFT models through their effective weights),
    Snapshots or mappings name → ``[out, in]`` matrix give an ``xarray.DataArray`` of counts over ``matrix``
    (canonical parameter names); the model's total is ``.sum()``. A raw GPT-2 ``state_dict`` stores Conv1D
    weights as ``[in, out]``: pass the models (or ``weight_matrices(model)``) to get output-space vectors.

    >>> from workbench import models
    >>> m = models.build("gpt2-1m")
    >>> int(intruder_dimensions(m, m).sum())
    0
    """
    if isinstance(base, torch.Tensor) or isinstance(tuned, torch.Tensor) or isinstance(base, np.ndarray):
        return find_intruders(base, tuned, k, eps, method=method).count
    check_intruder_args(k, eps, method)
    select = dict(include=include, exclude=exclude)
    b = matrices_of(base, **select, **({"embeddings": embeddings} if isinstance(base, torch.nn.Module) else {}))
    t = matrices_of(tuned, **select, **({"embeddings": embeddings} if isinstance(tuned, torch.nn.Module) else {}))
    device = next(iter(t.values())).device if t else None
    return intruder_profile(b, t, k, eps, method=method, device=device)["intruders"]
