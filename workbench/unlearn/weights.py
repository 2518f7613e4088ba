"""What unlearning did to the weights: which matrices moved, and the shape of the update.

:func:`update_summary` compares the model before and after unlearning with
:func:`workbench.spectra.compare` (effective rank, stable rank and spectral norm of ΔW; intruder
dimensions of the unlearned matrix against the original) and adds the relative change per matrix,
‖ΔW‖_F / ‖W‖_F. Sorted by relative change, it answers "which layers moved most".

>>> # ds = update_summary(target, unlearned); ds.relative_change.sortby(ds.relative_change, ascending=False)
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..matrices import weight_matrices


def update_summary(before, after, k: int = 10, eps: float = 0.5, embeddings: bool = False) -> xr.Dataset:
    """Per-matrix dataset (dim ``matrix``): ``relative_change``, ``delta_effective_rank``, ``intruders`` … ."""
    from ..spectra import compare

    ds = compare(before, after, k=k, eps=eps, embeddings=embeddings)
    w0 = weight_matrices(before, embeddings=embeddings)
    norms = np.array([float(w0[n].float().norm()) for n in ds.matrix.values])
    ds["weight_norm"] = ("matrix", norms)
    ds["relative_change"] = ds["delta_frobenius_norm"] / np.maximum(norms, 1e-12)
    ds["relative_change"].attrs["doc"] = "‖W_after − W_before‖_F / ‖W_before‖_F"
    return ds


def moved_most(summary: xr.Dataset, n: int = 5) -> list[tuple[str, float]]:
    """The ``n`` matrices with the largest relative change, as ``(name, change)``."""
    rc = summary["relative_change"].sortby(summary["relative_change"], ascending=False)
    return [(str(m), float(v)) for m, v in zip(rc.matrix.values[:n], rc.values[:n])]
