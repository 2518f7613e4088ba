"""Run groups: many records as one labelled Dataset, summarized over seeds with confidence intervals.

A finding from one seed cannot be told from noise. These functions turn a set of records (runs of the same
experiment with different seeds, or with different values of any config key) into evidence:

* :func:`combine` stacks records along a new dimension named after the key that tells them apart
  (``over="seed"``, or any key of their config), outer-joined on ``step`` (and on ``matrix``, ``index`` …):
  runs that logged at different steps line up, with NaN where a run has no value.
* :func:`summarize` reduces that dimension to ``mean``, ``sd``, the 95 % confidence interval of the mean
  (Student's t, ``ci_low``/``ci_high``) and ``n`` (non-missing values), along a new ``stat`` dimension. A
  sweep (:func:`workbench.regime.sweep`) over ``seed`` already has this shape and summarizes the same way.
* :func:`sign_count` answers "in how many seeds is A above B?" for paired runs — the count that goes next to
  a mean difference ("LoRA r=1 > full FT in intruders in 5/5 seeds").
* :func:`config_table` lists only the config keys that differ between records.

>>> import numpy as np, xarray as xr
>>> runs = [xr.Dataset({"loss": ("step", [3.0 - s, 2.0 - s])}, coords={"step": [10, 20]},
...                    attrs={"seed": s, "config": f'{{"seed": {s}, "lr": 0.001}}'}) for s in (0, 1, 2)]
>>> ds = combine(runs, over="seed")
>>> ds.loss.dims, ds.seed.values.tolist()
(('seed', 'step'), [0, 1, 2])
>>> s = summarize(ds, over="seed")
>>> float(s.loss.sel(stat="mean", step=20)), float(s.loss.sel(stat="sd", step=20)), int(s.loss.sel(stat="n", step=20))
(1.0, 1.0, 3)
>>> config_table(runs).columns.tolist()
['seed']
"""

from __future__ import annotations

import json
import math
import os
from typing import Iterable, Sequence

import numpy as np
import xarray as xr

from .errors import ConfigError

STATS = ("mean", "sd", "ci_low", "ci_high", "n")


def _as_record(item) -> xr.Dataset:
    """A record from a Dataset, a path to a saved record, or anything with a ``.record`` (a Run)."""
    if isinstance(item, xr.Dataset):
        return item
    if isinstance(item, (str, os.PathLike)):
        from .record import open_record

        return open_record(item)
    record = getattr(item, "record", None)
    if isinstance(record, xr.Dataset):
        return record
    raise ConfigError(f"Cannot use a {type(item).__name__} as a record: pass xarray Datasets, saved record paths or runs.")


def _config(ds: xr.Dataset) -> dict:
    config = ds.attrs.get("config", {})
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            config = {}
    return dict(config) if isinstance(config, dict) else {}


def key_value(ds: xr.Dataset, key: str):
    """The value of ``key`` for one record: its config entry, else its attribute of that name."""
    config = _config(ds)
    if key in config:
        return config[key]
    if key in ds.attrs:
        return ds.attrs[key]
    known = sorted(set(config) | {k for k in ds.attrs if k not in ("config", "model", "data", "versions", "extra")})
    raise ConfigError(f"The record {ds.attrs.get('label') or ds.attrs.get('run_id') or ''!r} has no {key!r} in its config "
                      f"or attributes; group by one of: {', '.join(known)}.")


def group(records: Iterable, by: str) -> dict:
    """Records split by the value of config key ``by``: ``{value: [record, …]}`` in first-seen order."""
    out: dict = {}
    for item in records:
        ds = _as_record(item)
        value = key_value(ds, by)
        out.setdefault(value if not isinstance(value, list) else tuple(value), []).append(ds)
    return out


def combine(records: Iterable, over: str = "seed") -> xr.Dataset:
    """One Dataset with a new dim ``over`` (one entry per record), outer-joined on every other dim.

    Records are ordered by their ``over`` value. Two records with the same value are refused (they would
    be indistinguishable); attributes that all records share are kept, ``config`` keeps the shared keys.
    """
    recs = [_as_record(r) for r in records]
    if not recs:
        raise ConfigError("combine() needs at least one record.")
    if not isinstance(over, str) or not over:
        raise ConfigError(f"over must be the name of a config key such as 'seed', got {over!r}.")
    values = [key_value(ds, over) for ds in recs]
    if len(set(map(repr, values))) != len(values):
        dup = sorted({repr(v) for v in values if sum(repr(w) == repr(v) for w in values) > 1})
        raise ConfigError(f"Several records have {over} = {', '.join(dup)}: combine runs that differ in {over!r}, or "
                          f"group them first with group(records, by=...).")
    order = sorted(range(len(recs)), key=lambda i: (str(type(values[i])), values[i]))
    recs, values = [recs[i] for i in order], [values[i] for i in order]
    clean = [ds.drop_vars([v for v in ds.coords if v == over], errors="ignore").expand_dims({over: [val]})
             for ds, val in zip(recs, values)]
    out = xr.concat(clean, dim=over, join="outer", data_vars="all", coords="different", compat="equals",
                    combine_attrs="drop_conflicts", fill_value=np.nan)
    configs = [_config(ds) for ds in recs]
    shared = {k: v for k, v in configs[0].items() if all(k in c and c[k] == v for c in configs[1:])}
    out.attrs["config"] = json.dumps(shared, sort_keys=True, default=str)
    out.attrs["combined_over"] = over
    out.attrs["run_ids"] = json.dumps([ds.attrs.get("run_id") for ds in recs])
    return out


def _t_quantile(df: np.ndarray) -> np.ndarray:
    from scipy import stats

    with np.errstate(invalid="ignore"):
        return np.where(df >= 1, stats.t.ppf(0.975, np.maximum(df, 1)), np.nan)


def summarize(ds: xr.Dataset, over: str = "seed", variables: Sequence[str] | None = None) -> xr.Dataset:
    """Mean, sd (n − 1), 95 % t-interval of the mean and n over dim ``over``, along a new ``stat`` dim.

    NaNs (a run with no value at a step) are left out of each statistic; ``n`` counts what was used. With
    ``n = 1`` the sd and the interval are NaN — one run has no spread to report.
    """
    if over not in ds.dims:
        raise ConfigError(f"The dataset has no {over!r} dimension (dims: {', '.join(map(str, ds.dims))}); "
                          f"combine(records, over={over!r}) first.")
    names = list(variables) if variables is not None else [v for v in ds.data_vars if over in ds[v].dims
                                                          and np.issubdtype(ds[v].dtype, np.number)]
    out = {}
    for name in names:
        da = ds[name].astype(float)
        n = da.notnull().sum(over)
        mean = da.mean(over, skipna=True)
        sd = da.std(over, ddof=1, skipna=True).where(n > 1)
        half = xr.apply_ufunc(_t_quantile, (n - 1).astype(float)) * sd / np.sqrt(n.where(n > 0))
        out[name] = xr.concat([mean, sd, mean - half, mean + half, n.astype(float)], dim="stat").assign_coords(stat=list(STATS))
    result = xr.Dataset(out, attrs={**ds.attrs, "summarized_over": over, "ci": "95% Student t interval of the mean"})
    return result


def sign_count(a: xr.DataArray, b: xr.DataArray | float, over: str = "seed") -> dict:
    """Paired comparison over ``over``: how often ``a > b``, and the mean difference with its 95 % CI.

    Returns ``{"greater": k, "n": n, "mean_diff": …, "ci_low": …, "ci_high": …}`` for scalar-per-run inputs
    (reduce other dims first). Pairs with a NaN on either side are left out.
    """
    diff = (a - b).astype(float)
    if set(diff.dims) != {over}:
        raise ConfigError(f"sign_count needs one value per {over} on each side; the difference has dims {diff.dims}. "
                          f"Select a step or reduce the other dims first.")
    values = diff.values[np.isfinite(diff.values)]
    n = int(values.size)
    mean = float(values.mean()) if n else math.nan
    half = float(_t_quantile(np.array(n - 1.0)) * values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return {"greater": int((values > 0).sum()), "n": n, "mean_diff": mean, "ci_low": mean - half, "ci_high": mean + half}


def config_table(records: Iterable):
    """A ``pandas.DataFrame``: one row per record (label or run id), one column per config key that differs."""
    import pandas as pd

    recs = [_as_record(r) for r in records]
    configs = [_config(ds) for ds in recs]
    keys = sorted({k for c in configs for k in c})
    differ = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]
    index = [ds.attrs.get("label") or ds.attrs.get("run_id") or f"record {i}" for i, ds in enumerate(recs)]
    if len(set(index)) != len(index):
        index = [f"{name} ({i})" for i, name in enumerate(index)]
    return pd.DataFrame([{k: c.get(k) for k in differ} for c in configs], index=index, columns=differ)


# ---------------------------------------------------------------- findings: a paired comparison stated as evidence

VERDICTS = ("reproduced", "opposite", "not settled", "too few runs")


def finding(claim: str, a: xr.DataArray, b: xr.DataArray | float = 0.0, over: str = "seed",
            expect: str = "greater") -> dict:
    """One claim of a paper tested over paired runs: ``a`` vs ``b`` per ``over`` (seed), with a verdict.

    ``expect`` is the paper's direction: ``"greater"`` (a > b) or ``"less"`` (a < b). Returns
    :func:`sign_count`'s numbers for ``a − b`` plus ``agree`` (pairs in the expected direction), ``claim``,
    ``expect``, ``verdict`` and ``text`` (one line for a notebook or a doc). The verdict reads the 95 % CI of
    the mean difference: ``"reproduced"`` when it excludes 0 on the expected side, ``"opposite"`` when it
    excludes 0 on the other side, ``"not settled"`` when it covers 0, ``"too few runs"`` with fewer than 2 pairs.

    >>> a = xr.DataArray([2.0, 3.0, 2.5], dims="seed")
    >>> f = finding("A beats B", a, 1.0)
    >>> f["verdict"], f["agree"], f["n"]
    ('reproduced', 3, 3)
    >>> finding("A below B", a, 1.0, expect="less")["verdict"]
    'opposite'
    """
    if expect not in ("greater", "less"):
        raise ConfigError(f"expect must be 'greater' (a > b) or 'less' (a < b), got {expect!r}.")
    out = sign_count(a, b, over)
    diff = (a - b).astype(float).values.ravel()
    diff = diff[np.isfinite(diff)]
    sign = 1.0 if expect == "greater" else -1.0
    agree = int((sign * diff > 0).sum())
    if out["n"] < 2:
        verdict = "too few runs"
    elif (sign > 0 and out["ci_low"] > 0) or (sign < 0 and out["ci_high"] < 0):
        verdict = "reproduced"
    elif (sign > 0 and out["ci_high"] < 0) or (sign < 0 and out["ci_low"] > 0):
        verdict = "opposite"
    else:
        verdict = "not settled"
    out.update(claim=claim, expect=expect, agree=agree, verdict=verdict)
    out["text"] = (f"{claim}: {verdict.upper()} — difference {out['mean_diff']:+.3g} "
                   f"[{out['ci_low']:+.3g}, {out['ci_high']:+.3g}] (95 % CI, n = {out['n']}), "
                   f"in the paper's direction in {agree}/{out['n']} {over}s")
    return out


def findings_dataset(findings: Sequence[dict], dim: str = "finding") -> xr.Dataset:
    """Findings (from :func:`finding`) as a Dataset over ``dim``: ``mean_diff``, ``ci_low``, ``ci_high``,
    ``agree``, ``n``, ``verdict``, ``claim`` and ``text`` — what a notebook saves next to its runs."""
    if not findings:
        raise ConfigError("findings_dataset() needs at least one finding (see workbench.groups.finding).")
    index = list(range(len(findings)))
    data = {k: (dim, [float(f[k]) for f in findings]) for k in ("mean_diff", "ci_low", "ci_high")}
    data.update({k: (dim, [int(f[k]) for f in findings]) for k in ("agree", "n")})
    data.update({k: (dim, [str(f[k]) for f in findings]) for k in ("verdict", "claim", "expect", "text")})
    return xr.Dataset(data, coords={dim: index})


def ci_table(ds: xr.Dataset, over: str = "seed", variables: Sequence[str] | None = None, digits: int = 3):
    """A ``pandas.DataFrame`` of ``"mean ± half-width"`` (95 % CI over ``over``) per variable, one row per value of
    the one remaining dim (or one row when none remains)."""
    import pandas as pd

    s = summarize(ds, over=over, variables=variables)
    rows = [d for d in s.dims if d != "stat"]
    if len(rows) > 1:
        raise ConfigError(f"ci_table needs at most one dim besides {over!r}; the summary has {rows}. Select first.")

    def num(x: float, sig: int) -> str:  # ``sig`` significant digits, but never an exponent for 100 … 99999
        mag = math.floor(math.log10(abs(x))) if math.isfinite(x) and x != 0 else 0
        return f"{x:.{max(sig, min(mag + 1, 5))}g}"

    def cell(da):
        mean, lo, hi = (float(da.sel(stat=k)) for k in ("mean", "ci_low", "ci_high"))
        return f"{num(mean, digits)} ± {num((hi - lo) / 2, 2)}" if math.isfinite(hi) else num(mean, digits)

    if not rows:
        return pd.DataFrame({v: [cell(s[v])] for v in s.data_vars}, index=["all"])
    dim = rows[0]
    return pd.DataFrame({v: [cell(s[v].sel({dim: x})) for x in s[dim].values] for v in s.data_vars},
                        index=pd.Index(s[dim].values, name=dim))
def by_seed(ds: xr.DataArray | xr.Dataset, by: str, over: str = "seed", dim: str = "run"):
    """Runs stacked along ``dim`` (coords ``by`` and ``over`` on it) → dims ``(by, over)``: one entry per setting
    and seed, ready for :func:`summarize` over ``over`` and :func:`sign_count` between two settings.

    >>> import xarray as xr
    >>> x = xr.DataArray([1.0, 2.0, 3.0, 5.0], dims="run", coords={"setting": ("run", ["a", "a", "b", "b"]),
    ...                                                            "seed": ("run", [0, 1, 0, 1])})
    >>> by_seed(x, by="setting").sel(setting="b").values.tolist()
    [3.0, 5.0]
    """
    for key in (by, over):
        if key not in ds.coords or ds[key].dims != (dim,):
            raise ConfigError(f"by_seed needs a {key!r} coordinate along {dim!r}; add it with "
                              f"results.assign_coords({key}=({dim!r}, [...])).")
    keep = [c for c in ds.coords if dim in ds[c].dims and c not in (by, over, dim)]
    return ds.drop_vars(keep + [dim], errors="ignore").set_index({dim: [by, over]}).unstack(dim)


def mean_ci_text(values, digits: int = 2, signed: bool = False) -> str:
    """``"12.30 ± 1.10 (n = 3)"``: the mean and the half-width of its 95 % t-interval over the finite ``values``
    (an array, a list, or a one-dimensional DataArray); ``± –`` with one value.

    >>> mean_ci_text([1.0, 2.0, 3.0])
    '2.00 ± 2.48 (n = 3)'
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    n = int(v.size)
    if not n:
        return "– (n = 0)"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    half = float(_t_quantile(np.array(n - 1.0)) * v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return f"{fmt.format(v.mean())} ± {'–' if math.isnan(half) else f'{half:.{digits}f}'} (n = {n})"


def direction(sc: dict, expected: str = "greater", share: float = 0.8) -> str:
    """Verdict on a paired comparison from :func:`sign_count`: did ``a − b`` go the ``expected`` way
    (``"greater"`` or ``"less"``)?

    ``"reproduced"`` when at least ``share`` of the pairs go that way and the 95 % CI of the mean difference
    excludes 0 on that side; ``"opposite"`` when the same holds the other way; else ``"not settled"``.

    >>> direction({"greater": 5, "n": 5, "mean_diff": 2.0, "ci_low": 1.0, "ci_high": 3.0})
    'reproduced'
    >>> direction({"greater": 0, "n": 5, "mean_diff": -2.0, "ci_low": -3.0, "ci_high": -1.0})
    'opposite'
    """
    if expected not in ("greater", "less"):
        raise ConfigError(f"expected must be 'greater' or 'less', got {expected!r}.")
    n = sc["n"]
    if not n:
        return "not settled"
    up, down = sc["greater"] / n, (n - sc["greater"]) / n
    low, high = sc.get("ci_low", math.nan), sc.get("ci_high", math.nan)
    goes_up = up >= share and low > 0
    goes_down = down >= share and high < 0
    if expected == "greater":
        return "reproduced" if goes_up else "opposite" if goes_down else "not settled"
    return "reproduced" if goes_down else "opposite" if goes_up else "not settled"


def sign_text(sc: dict, a: str, b: str, quantity: str, digits: int = 2) -> str:
    """``"lora r=1 > full in intruders in 5/5 seeds (mean difference +12.00, 95 % CI [+8.00, +16.00])"``.

    >>> sign_text({"greater": 2, "n": 3, "mean_diff": 0.5, "ci_low": -1.0, "ci_high": 2.0}, "A", "B", "loss")
    'A > B in loss in 2/3 seeds (mean difference +0.50, 95 % CI [-1.00, +2.00])'
    """
    ci = ("–" if math.isnan(sc["ci_low"]) else f"[{sc['ci_low']:+.{digits}f}, {sc['ci_high']:+.{digits}f}]")
    return (f"{a} > {b} in {quantity} in {sc['greater']}/{sc['n']} seeds (mean difference {sc['mean_diff']:+.{digits}f}, "
            f"95 % CI {ci})")
