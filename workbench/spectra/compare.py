"""Two checkpoints, matrix by matrix: what fine-tuning (or any training) did to each weight's spectrum.

:func:`compare` is :func:`workbench.spectra.moved.what_moved` with every variable: for a base W0 and a
tuned W (``[out, in]``, fp32) it reports, per matrix (names from :mod:`workbench.vocabulary`):

* ``intruders`` and ``max_cos`` (``rank``): intruder count and the max-|cos| profile of the top-k tuned
  left singular vectors against all base vectors (see :mod:`workbench.spectra.intruders`);
* ``principal_angles`` (``rank``, radians, ascending) between the top-k left singular subspaces of W0
  and W, and ``subspace_overlap`` = mean cos² of those angles (1 = same subspace, ≈ k/m for random ones);
* ``singular_values_init`` / ``singular_values`` (``index``) and ``singular_value_shift`` = σ_i(W) − σ_i(W0);
  ``effective_rank_init`` / ``effective_rank``, ``stable_rank_init`` / ``stable_rank``;
* the update ΔW = W − W0: ``delta_norm``, ``delta_rel_norm``, ``delta_singular_values`` (``index``),
  ``delta_effective_rank``, ``delta_stable_rank``, ``delta_numerical_rank``, ``delta_spectral_norm``;
* the scalars ``distance_from_init``, ``relative_distance_from_init`` and ``intruders_total``.

One SVD of W0, one of W and one ``svdvals`` of ΔW per matrix, batched by shape.

>>> import torch
>>> q = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(0)))[0]
>>> [round(float(a), 6) for a in principal_angles(q[:, :2], q[:, [1, 0]])]   # same plane
[0.0, 0.0]
"""

from __future__ import annotations

import xarray as xr

from .moved import principal_angles, what_moved

__all__ = ["compare", "compare_matrices", "principal_angles"]


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
    return what_moved(base, tuned, k=k, eps=eps, include=include, exclude=exclude, embeddings=embeddings, device=device)


def compare_matrices(base, tuned, k: int = 10, eps: float = 0.5) -> xr.Dataset:
    """:func:`compare` for one pair of 2-D matrices (the result has a single ``matrix`` entry, ``"matrix"``)."""
    return compare({"matrix": base}, {"matrix": tuned}, k, eps)
