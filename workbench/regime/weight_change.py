"""How far the weights moved from init: per-matrix relative change and total distance, with a log-fit.

:class:`WeightChange` is the "what moved" probe (:class:`workbench.spectra.moved.MovedProbe`) logging the norms:

* ``delta_rel_norm`` ``[matrix]`` = ‖W_t − W_0‖_F / ‖W_0‖_F against ``run.reference`` (W0).
  Rich learning gives large values, lazy learning values near 0.
* ``distance_from_init`` = √Σ‖W_t − W_0‖²_F over the selected matrices, and
  ``relative_distance_from_init`` = that over √Σ‖W_0‖²_F.
* :func:`log_fit` fits ``distance = a + b · ln(step)`` over a record ("Train longer, generalize better":
  distance from init grows about logarithmically) and returns the slope, intercept and R².

>>> import numpy as np, xarray as xr
>>> steps = np.arange(1, 100)
>>> ds = xr.Dataset({"distance_from_init": ("step", 0.5 + 2.0 * np.log(steps))}, coords={"step": steps})
>>> fit = log_fit(ds)
>>> round(fit["slope"], 6), round(fit["r2"], 6)
(2.0, 1.0)
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import ConfigError
from ..probes import PROBES
from ..spectra.moved import MovedProbe


@PROBES.register("weight_change", help="relative weight change per matrix and distance from init")
class WeightChange(MovedProbe):
    """``delta_rel_norm`` of each selected matrix against the run's reference snapshot W0, plus
    ``distance_from_init`` and ``relative_distance_from_init`` over the selected matrices (norms only: no SVD)."""

    def __init__(self, **params):
        params.setdefault("variables", ["delta_rel_norm", "distance_from_init", "relative_distance_from_init"])
        super().__init__(**params)


def log_fit(record, var: str = "distance_from_init", min_step: int = 1) -> dict:
    """Least-squares fit ``var ≈ intercept + slope · ln(step)`` over steps ≥ ``min_step``; slope, intercept, R², n.

    ``record`` is an ``xr.Dataset`` with a ``step`` dim (a run's ``record``) or a run.
    """
    ds = record.record if hasattr(record, "record") and not isinstance(record, xr.Dataset) else record
    if var not in ds:
        raise ConfigError(f"The record has no {var!r}; attach a WeightChange probe. It has: {', '.join(ds.data_vars)}.")
    da = ds[var].dropna("step")
    da = da.sel(step=da.step >= max(1, min_step))
    if da.sizes.get("step", 0) < 3:
        raise ConfigError(f"log_fit needs at least 3 measurements of {var!r} at step ≥ 1, found {da.sizes.get('step', 0)}; "
                          "measure more often (probe every=…) or train longer.")
    t = np.log(da.step.values.astype(float))
    y = da.values.astype(float)
    slope, intercept = np.polyfit(t, y, 1)
    resid = y - (intercept + slope * t)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return {"slope": float(slope), "intercept": float(intercept), "r2": r2, "n": int(len(y))}
