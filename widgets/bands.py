"""Seed bands: runs that differ only in one config key (``seed``) drawn as their mean ± 95 % CI.

The record view hands over one curve per record (a ``DataArray`` over ``step``: a scalar variable, or one
matrix row of a per-matrix variable) and the key to pool over. :func:`groups_of` splits the records by the
*other* config keys that differ between them (:func:`workbench.groups.config_table`); :func:`band_data`
stacks each group with :func:`workbench.groups.combine` and reduces it with
:func:`workbench.groups.summarize` — the view computes no statistic of its own. Smoothing (the live views'
debiased EMA, :func:`widgets.series.debiased_ema`) is applied to each run's curve *before* the
statistics, so the band is the interval of the smoothed quantity.

>>> import xarray as xr
>>> runs = {f"s{s}": xr.DataArray([3.0 - s, 2.0 - s], dims="step", coords={"step": [1, 2]},
...                               attrs={"config": f'{{"seed": {s}, "lr": 0.1}}'}) for s in (0, 1, 2)}
>>> bands = band_data(runs, "seed")
>>> list(bands), bands["all runs"].sel(stat="mean").values.tolist()
(['all runs'], [2.0, 1.0])
"""

from __future__ import annotations

import json

import holoviews as hv
import numpy as np
import pandas as pd
import xarray as xr

from workbench.groups import combine, config_table, summarize

from .series import debiased_ema

NONE = "none"
#: config keys that name a run rather than set up its experiment: never a reason to keep runs apart
NOT_GROUPING = frozenset({"label"})


def _config(attrs: dict) -> dict:
    config = attrs.get("config", {})
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            config = {}
    return config if isinstance(config, dict) else {}


def differing_keys(records: dict[str, xr.Dataset]) -> list[str]:
    """The config keys whose values differ between the records (the columns of ``config_table``)."""
    if len(records) < 2:
        return []
    return list(config_table(list(records.values())).columns)


def groups_of(curves: dict[str, xr.DataArray], over: str) -> dict[str, list[str]]:
    """Labels of the curves grouped by every differing config key except ``over`` (and ``label``, which only
    names a run): ``{group name: [labels]}``.

    A curve whose record has no ``over`` in its config stays alone (it cannot be pooled).
    """
    configs = {label: _config(da.attrs) for label, da in curves.items()}
    keys = sorted({k for c in configs.values() for k in c})
    differ = [k for k in keys if k != over and k not in NOT_GROUPING
              and len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs.values()}) > 1]
    out: dict[str, list[str]] = {}
    for label, config in configs.items():
        if over not in config:
            out[label] = [label]
            continue
        name = ", ".join(f"{k}={config.get(k)}" for k in differ) or "all runs"
        out.setdefault(name, []).append(label)
    return out


def smoothed(da: xr.DataArray, beta: float) -> xr.DataArray:
    """``da`` over ``step`` with the live views' debiased EMA along its measured (non-NaN) steps."""
    da = da.dropna("step")
    if beta <= 0 or da.sizes.get("step", 0) == 0:
        return da
    return da.copy(data=debiased_ema(da.values.astype(float), beta))


def band_data(curves: dict[str, xr.DataArray], over: str, smoothing: float = 0.0) -> dict[str, xr.DataArray]:
    """Per group: ``summarize`` of its curves combined over ``over`` (dims ``stat`` × ``step``).

    ``curves`` maps a record label to one ``DataArray`` over ``step`` carrying its record's attributes
    (``config``, so that ``over`` can be read).
    """
    out = {}
    for name, labels in groups_of(curves, over).items():
        records = []
        for label in labels:
            da = smoothed(curves[label], smoothing)
            records.append(xr.Dataset({"value": da.drop_vars([c for c in da.coords if c != "step"])},
                                      attrs={k: v for k, v in curves[label].attrs.items() if k in ("config", "run_id",
                                                                                                    "label", over)}))
        out[name] = summarize(combine(records, over=over), over=over)["value"]
    return out


def band_elements(bands: dict[str, xr.DataArray], over: str, logy: bool = False, value: str = "value") -> list:
    """HoloViews layers: a shaded 95 % CI (``Area`` between ``ci_low`` and ``ci_high``) and the mean curve
    of each group (its y dimension named ``value``), labelled with its group and ``n``; a group of one run is
    its curve alone."""
    layers = []
    colors = hv.Cycle.default_cycles["default_colors"]
    for i, (name, stats) in enumerate(bands.items()):
        frame = pd.DataFrame({"step": stats.step.values, **{s: stats.sel(stat=s).values for s in
                                                             ("mean", "ci_low", "ci_high", "n")}})
        frame = frame[np.isfinite(frame["mean"])]
        n = int(frame["n"].max()) if len(frame) else 0
        color = colors[i % len(colors)]
        label = f"{name} (mean of {n} {over}s, 95% CI)" if n > 1 else name
        if n > 1:
            band = frame[np.isfinite(frame["ci_low"])]
            if logy:  # a log axis cannot show a band reaching zero or below: clip it to the smallest positive value
                floor = band[["ci_low", "mean"]].where(band[["ci_low", "mean"]] > 0).min().min()
                band = band.assign(ci_low=band["ci_low"].clip(lower=floor))
            layers.append(hv.Area(band, "step", [hv.Dimension("ci_low", label=value), "ci_high"], label=label).opts(
                color=color, alpha=0.25, line_alpha=0))
        layers.append(hv.Curve(frame.rename(columns={"mean": value}), "step", value, label=label).opts(color=color))
    return layers
