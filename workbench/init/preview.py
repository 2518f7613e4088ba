"""Preview an init before training: singular values and ranks, before and after the recipe.

The spectra come from :func:`workbench.spectra.model_spectra` (one implementation of every rank); the names
follow :mod:`workbench.vocabulary` with a ``_before`` / ``_after`` suffix.

>>> import torch
>>> from workbench.init import preview
>>> ds = preview(torch.randn(20, 20), "low_rank", rank=3)
>>> int(ds.numerical_rank_after.sel(matrix="matrix")), float(ds.effective_rank_after.sel(matrix="matrix")) <= 3
(3, True)
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from torch import nn

from .apply import plan, resolve

#: model_spectra's variables a preview reports, each as ``<name>_before`` and ``<name>_after``.
PREVIEW_VARIABLES = ("singular_values", "effective_rank", "numerical_rank", "frobenius_norm")


def preview(target: nn.Module | torch.Tensor, recipe, data=None, loss=None, **params) -> xr.Dataset:
    """Spectrum and effective rank of the selected matrices before and after ``recipe`` (nothing modified).

    ``target`` is a model or a single ``[out, in]`` matrix (named ``"matrix"``). Returns a Dataset with
    ``singular_values_before``/``_after`` over ``(matrix, index)`` and ``effective_rank_*``,
    ``numerical_rank_*``, ``frobenius_norm_*`` over ``matrix``; ``attrs["recipe"]`` describes the recipe.
    """
    rec = resolve(recipe, **params)
    if isinstance(target, torch.Tensor):
        if target.ndim != 2:
            from ..errors import ConfigError

            raise ConfigError(f"preview expects a model or a 2-D matrix, got a tensor of shape {tuple(target.shape)}.")
        holder = _MatrixHolder(target)
        new = plan(holder, rec.copy(include="^matrix$", exclude="$^"), data=data, loss=loss)
        before = {"matrix": target.detach().float()}
    else:
        from .apply import target_parameters

        new = plan(target, rec, data=data, loss=loss)
        tp = target_parameters(target, rec)
        before = {n: (p.detach().T if t else p.detach()).float() for n, (p, t) in tp.items()}
    from ..spectra import model_spectra

    names = list(new)
    parts = []
    for when, mats in (("before", before), ("after", new)):
        spec = model_spectra({n: mats[n] for n in names}, alpha=False)
        parts.append(spec[list(PREVIEW_VARIABLES)].drop_vars(["rows", "cols"]).rename({v: f"{v}_{when}" for v in PREVIEW_VARIABLES}))
    ds = xr.merge(parts, join="outer")
    ds.attrs["recipe"] = str(rec.describe())
    return ds


class _MatrixHolder(nn.Module):
    """A module owning one matrix parameter named ``matrix`` (so matrices go through the same plan)."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.matrix = nn.Parameter(w.detach().float().clone(), requires_grad=False)
