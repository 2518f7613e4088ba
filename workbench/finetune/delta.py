"""The true update ΔW of every fine-tuned matrix: effective weight now − W0 (the run's reference snapshot).

Why not PEFT's ``get_delta_weight()``: PiSSA, OLoRA, CorDA and LoRA-GA rewrite the base weight to
``W0 − s·B0A0`` when the adapter is created, so ``get_delta_weight() = s·BA`` is *not* the change of the
function; the true update is ``s·(BA − B0A0)``. The workbench never reasons about factors: it takes the
effective weight the layer applies (:func:`workbench.weight_matrices`, which probes PEFT layers and asks
LoRA-SB layers) and subtracts the W0 snapshot taken *before* PEFT touched the model. That is right for
every init, DoRA and rsLoRA included, and for full fine-tuning.

>>> import torch
>>> from workbench import Snapshot
>>> m = torch.nn.Linear(4, 3)
>>> ref = Snapshot.from_model(m)
>>> with torch.no_grad(): _ = m.weight.add_(1.0)
>>> float(delta_weights(m, ref)["weight"].mean())
1.0
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..errors import ConfigError
from ..matrices import weight_matrices
from ..probes import PROBES, Probe
from ..snapshot import Snapshot


def delta_weights(model: nn.Module, reference: Snapshot, names=None) -> dict[str, torch.Tensor]:
    """``{matrix: W_effective − W0}`` as fp32 ``[out, in]`` tensors, for ``names`` (default: all in ``reference``)."""
    wanted = list(reference.names() if names is None else names)
    missing = [n for n in wanted if n not in reference]
    if missing:
        raise ConfigError(f"The reference snapshot has no matrix {missing[0]!r}; it has e.g. {reference.names()[:3]}.")
    current = weight_matrices(model, include=lambda n: n in set(wanted))
    out = {}
    for name in wanted:
        if name not in current:
            raise ConfigError(f"The model has no weight matrix {name!r} (was it built from another base?).")
        w0 = reference.get(name).to(current[name].device)
        out[name] = current[name].detach().float() - w0
    return out


def _erank(s: torch.Tensor) -> float:
    """Roy & Vetterli effective rank from singular values (NaN for the zero matrix)."""
    total = float(s.sum())
    if not total > 0:
        return math.nan
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def delta_summary(model: nn.Module, reference: Snapshot, names=None, tol: float = 1e-6) -> xr.Dataset:
    """Per-matrix summary of ΔW: Frobenius norm, relative norm ‖ΔW‖/‖W0‖, effective and numerical rank.

    The effective rank uses :func:`workbench.spectra.effective_rank` when that module is present (same
    formula, Roy & Vetterli); a zero ΔW has effective rank NaN and numerical rank 0.
    """
    try:
        from ..spectra import effective_rank
    except ImportError:  # the spectra engine is optional for this summary
        effective_rank = None
    deltas = delta_weights(model, reference, names)
    rows = {"delta_norm": [], "delta_rel_norm": [], "delta_effective_rank": [], "delta_numerical_rank": []}
    for name, d in deltas.items():
        s = torch.linalg.svdvals(d)  # [min(out, in)]
        norm = float(torch.linalg.vector_norm(d))
        w0 = float(torch.linalg.vector_norm(reference.get(name)))
        rows["delta_norm"].append(norm)
        rows["delta_rel_norm"].append(norm / w0 if w0 > 0 else math.nan)
        if norm == 0:
            er = math.nan
        else:
            er = float(effective_rank(d)) if effective_rank is not None else _erank(s)
        rows["delta_effective_rank"].append(er)
        cutoff = tol * float(s.max()) * max(d.shape) if norm > 0 else math.inf
        rows["delta_numerical_rank"].append(int((s > cutoff).sum()) if norm > 0 else 0)
    coords = {"matrix": list(deltas)}
    return xr.Dataset({k: ("matrix", np.asarray(v, dtype=float)) for k, v in rows.items()}, coords=coords)


@PROBES.register("delta", help="norm and effective rank of ΔW = W − W0 per matrix")
class DeltaProbe(Probe):
    """Records ``delta_norm``, ``delta_rel_norm`` and ``delta_effective_rank`` (dims ``step × matrix``).

    ``names`` restricts the matrices (the fine-tuning stage passes its target matrices).
    """

    def __init__(self, names=None, **params):
        super().__init__(**params)
        self.names = list(names) if names is not None else None

    def measure(self, run) -> dict:
        ds = delta_summary(run.model, run.reference, self.names)
        return {name: ds[name] for name in ("delta_norm", "delta_rel_norm", "delta_effective_rank")}
