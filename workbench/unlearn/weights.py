"""What unlearning did to the weights: which matrices moved, and the shape of the update.

:func:`update_summary` compares the model before and after unlearning with the one "what moved" engine
(:func:`workbench.spectra.moved.what_moved`, as :func:`workbench.spectra.compare`): per matrix
``delta_rel_norm`` = ‖W_after − W_before‖_F / ‖W_before‖_F, the effective rank, stable rank and spectral
norm of ΔW, intruder dimensions of the unlearned matrix against the original, principal angles… (names
from :mod:`workbench.vocabulary`). Sorted by ``delta_rel_norm``, it answers "which layers moved most".

>>> # ds = update_summary(target, unlearned); ds.delta_rel_norm.sortby(ds.delta_rel_norm, ascending=False)
"""

from __future__ import annotations

import xarray as xr


def update_summary(before, after, k: int = 10, eps: float = 0.5, embeddings: bool = False) -> xr.Dataset:
    """Per-matrix dataset (dim ``matrix``): ``delta_rel_norm``, ``delta_effective_rank``, ``intruders`` … ."""
    from ..spectra import compare

    return compare(before, after, k=k, eps=eps, embeddings=embeddings)


def moved_most(summary: xr.Dataset, n: int = 5) -> list[tuple[str, float]]:
    """The ``n`` matrices with the largest relative change ``delta_rel_norm``, as ``(name, change)``."""
    rc = summary["delta_rel_norm"].sortby(summary["delta_rel_norm"], ascending=False)
    return [(str(m), float(v)) for m, v in zip(rc.matrix.values[:n], rc.values[:n])]
