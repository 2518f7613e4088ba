"""Preview an init before training: singular values and effective rank, before and after the recipe.

>>> import torch
>>> from workbench.init import preview
>>> ds = preview(torch.randn(20, 20), "low_rank", rank=3)
>>> int(ds.rank_after.sel(matrix="matrix")), float(ds.erank_after.sel(matrix="matrix")) <= 3
(3, True)
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from torch import nn

from .apply import plan, resolve


def effective_rank(s: torch.Tensor, shape: tuple[int, int] | None = None) -> float:
    """Roy & Vetterli effective rank from singular values ``s``: exp(entropy of s/Σs).

    Uses :func:`workbench.spectra.effective_rank_sv` (so every lab agrees, round-off zeros dropped
    given ``shape``) and falls back to the same formula if the spectra package is unavailable.
    """
    try:
        from ..spectra.core import effective_rank_sv
    except ImportError:  # pragma: no cover - spectra is part of the workbench
        s = s.double().clamp(min=0)
        total = s.sum()
        if total <= 0:
            return 0.0
        p = s / total
        return float(torch.exp(-torch.special.xlogy(p, p).sum()))
    return float(effective_rank_sv(s, shape))


def _stats(w: torch.Tensor) -> tuple[np.ndarray, float, int, float]:
    s = torch.linalg.svdvals(w.float())
    tol = s.max() * max(w.shape) * torch.finfo(torch.float32).eps if s.numel() else 0
    return s.numpy(), effective_rank(s, tuple(w.shape)), int((s > tol).sum()), float(w.float().norm())


def preview(target: nn.Module | torch.Tensor, recipe, data=None, loss=None, **params) -> xr.Dataset:
    """Spectrum and effective rank of the selected matrices before and after ``recipe`` (nothing modified).

    ``target`` is a model or a single ``[out, in]`` matrix (named ``"matrix"``). Returns a Dataset with
    ``sigma_before``/``sigma_after`` over ``(matrix, index)`` and ``erank_*``, ``rank_*``,
    ``frobenius_*`` over ``matrix``; ``attrs["recipe"]`` describes the recipe.
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
    names = list(new)
    width = max(min(w.shape) for w in new.values())
    out = {f"{k}_{when}": [] for k in ("sigma", "erank", "rank", "frobenius") for when in ("before", "after")}
    for n in names:
        for when, w in (("before", before[n]), ("after", new[n])):
            s, er, rk, fro = _stats(w)
            out[f"sigma_{when}"].append(np.pad(s, (0, width - len(s)), constant_values=np.nan))
            out[f"erank_{when}"].append(er)
            out[f"rank_{when}"].append(rk)
            out[f"frobenius_{when}"].append(fro)
    data_vars = {k: (("matrix", "index") if k.startswith("sigma") else ("matrix",), np.asarray(v)) for k, v in out.items()}
    ds = xr.Dataset(data_vars, coords={"matrix": names, "index": np.arange(width)})
    ds.attrs["recipe"] = str(rec.describe())
    return ds


class _MatrixHolder(nn.Module):
    """A module owning one matrix parameter named ``matrix`` (so matrices go through the same plan)."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.matrix = nn.Parameter(w.detach().float().clone(), requires_grad=False)
