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

import torch
import xarray as xr
from torch import nn

from ..errors import ConfigError
from ..matrices import weight_matrices
from ..probes import PROBES
from ..snapshot import Snapshot
from ..spectra.moved import MovedProbe, what_moved


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


DELTA_VARIABLES = ("delta_norm", "delta_rel_norm", "delta_effective_rank", "delta_stable_rank", "delta_numerical_rank")


def delta_summary(model: nn.Module, reference: Snapshot, names=None) -> xr.Dataset:
    """Per-matrix summary of ΔW (dim ``matrix``): ``delta_norm``, ``delta_rel_norm`` = ‖ΔW‖/‖W0‖, and the
    effective, stable and numerical rank of ΔW (all 0 while ΔW = 0).

    :func:`workbench.spectra.moved.what_moved` computes it (the one "what moved" engine; names from
    :mod:`workbench.vocabulary`); ``names`` restricts the matrices (default: all in ``reference``).
    """
    return what_moved(reference, model, DELTA_VARIABLES, names=list(reference.names() if names is None else names))


@PROBES.register("delta", help="norm and effective rank of ΔW = W − W0 per matrix")
class DeltaProbe(MovedProbe):
    """Records ``delta_norm``, ``delta_rel_norm`` and ``delta_effective_rank`` (dims ``step × matrix``).

    A :class:`~workbench.spectra.moved.MovedProbe` with those variables; ``names`` restricts the matrices
    (the fine-tuning stage passes its target matrices).
    """

    def __init__(self, names=None, **params):
        params.setdefault("variables", ["delta_norm", "delta_rel_norm", "delta_effective_rank"])
        super().__init__(names=list(names) if names is not None else None, **params)
