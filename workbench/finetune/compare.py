"""Side-by-side results of several fine-tuning runs: one ``xarray.Dataset`` over ``run`` (× ``step`` / ``matrix``).

What the lab's notebooks save and the compare-runs panel plots:

* over ``run × step``: ``loss`` (task, train), ``val_loss`` (task, held out), ``pretrain_loss`` (forgetting),
  ``intruders_total``;
* over ``run × matrix``: ``intruders``, ``delta_effective_rank``, ``delta_norm``, ``delta_rel_norm`` — the last
  values the run's probes logged, or measured now by the "what moved" engine
  (:func:`workbench.spectra.moved.what_moved`, the run's model against its reference W0, over its target
  matrices) when the record has none (``intruders_every=0``) and the run is idle, or when ``measure=True``;
* over ``run``: the settings (``method``, ``rank``, ``init``, ``use_rslora``, ``scaling``, ``trainable``) and
  the final numbers (``final_val_loss``, ``final_pretrain_loss``, ``forgetting`` = final − step-0
  ``pretrain_loss``, ``final_intruders``, ``mean_delta_effective_rank``).

Runs that learn at different speeds are also compared **at matched task loss** (:func:`at_target`: each
run's first evaluated step whose held-out task loss reaches a common target, and its intruders and
forgetting there) — the protocol of "LoRA vs Full Fine-tuning: An Illusion of Equivalence".

>>> ds = compare_runs([full, lora_r1, lora_r8])          # doctest: +SKIP
>>> ds.final_intruders.to_series()                        # doctest: +SKIP
>>> at_target(ds, common_target(ds)).intruders_at_target  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import ConfigError

STEP_VARS = ("loss", "val_loss", "pretrain_loss", "intruders_total")
MATRIX_VARS = ("intruders", "delta_effective_rank", "delta_norm", "delta_rel_norm")


def run_label(run) -> str:
    """``label`` if set, else e.g. ``full``, ``lora r=8``, ``lora r=64 rs``, ``lora r=8 pissa``, ``lora_sb r=8``."""
    if run.label:
        return run.label
    if run.method == "full":
        return "full"
    text = f"{run.method} r={run.rank}"
    if run.use_rslora:
        text += " rs"
    if run.use_dora:
        text += " dora"
    if run.method == "lora" and run.init != "default":
        text += f" {run.init}"
    return text


def _last(da: xr.DataArray) -> xr.DataArray:
    """Values at the last step where the variable was measured (NaN steps dropped)."""
    valid = da.dropna("step", how="all")
    return valid.isel(step=-1) if valid.sizes.get("step", 0) else da.isel(step=-1) * np.nan


def measured_now(run) -> xr.Dataset:
    """The per-matrix :data:`MATRIX_VARS` of ``run`` now: its model against its reference W0, over its target matrices."""
    from ..spectra.moved import what_moved

    return what_moved(run.reference, run.model, MATRIX_VARS, names=run.target_matrices, k=run.intruder_k,
                      eps=run.intruder_eps)


def summarize(run, measure: bool | None = None) -> xr.Dataset:
    """One run's comparison row (dims ``step`` and ``matrix``), from its record.

    ``measure``: ``True`` measures the per-matrix variables now (:func:`measured_now`), ``False`` takes the
    record's last logged values only; ``None`` measures when the record has none of them and the run is not
    training (a live view polling a training run never pays for SVDs).
    """
    rec = run.record
    label = run_label(run)
    out = xr.Dataset({name: rec[name] for name in STEP_VARS if name in rec})
    if measure is None:
        measure = not any(name in rec for name in MATRIX_VARS) and not run.running
    now = measured_now(run) if measure else None
    for name in MATRIX_VARS:
        if now is not None:
            out[name] = now[name]
        elif name in rec:
            out[name] = _last(rec[name])
            out[name] = out[name].drop_vars("step", errors="ignore")
    scalars = {"method": run.method, "rank": run.rank if run.method != "full" else 0,
               "init": run.init if run.method == "lora" else run.method, "use_rslora": bool(run.use_rslora),
               "scaling": float(run.scaling()), "trainable": run.describe_model()["trainable"],
               "steps": run.global_step, "init_seconds": float(getattr(run, "init_seconds", np.nan))}
    for key, value in scalars.items():
        out[key] = value
    if "val_loss" in rec:
        out["final_val_loss"] = float(_last(rec.val_loss))
    if "pretrain_loss" in rec:
        pl = rec.pretrain_loss.dropna("step")
        out["final_pretrain_loss"] = float(pl.isel(step=-1)) if pl.sizes["step"] else np.nan
        out["forgetting"] = float(pl.isel(step=-1) - pl.isel(step=0)) if pl.sizes["step"] else np.nan
    if "intruders" in out:
        out["final_intruders"] = float(out.intruders.sum())
    if "delta_effective_rank" in out:
        out["mean_delta_effective_rank"] = float(out.delta_effective_rank.mean())
    return out.expand_dims(run=[label])


def compare_runs(runs, measure: bool | None = None) -> xr.Dataset:
    """Stack :func:`summarize` of several runs along ``run`` (labels must be unique; ``measure`` as there)."""
    runs = list(runs)
    if not runs:
        raise ConfigError("compare_runs needs at least one fine-tuning run.")
    labels = [run_label(r) for r in runs]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ConfigError(f"Runs to compare need distinct labels; {dupes} appear more than once. Set label= on them.")
    parts = [summarize(r, measure) for r in runs]
    return xr.concat(parts, dim="run", join="outer", data_vars="all", coords="minimal", compat="override")


def summary_table(ds: xr.Dataset):
    """A ``pandas.DataFrame`` with one row per run and the final numbers (what the notebooks print)."""
    cols = [c for c in ("method", "rank", "init", "use_rslora", "scaling", "trainable", "init_seconds", "final_val_loss",
                        "final_pretrain_loss", "forgetting", "final_intruders", "mean_delta_effective_rank")
            if c in ds]
    return ds[cols].to_dataframe()[cols]


def common_target(ds: xr.Dataset, loss: str = "val_loss") -> float:
    """The task loss every improving run reaches: the largest of the runs' lowest ``loss`` after the first
    evaluation, over the runs whose lowest value is below their first (a run that only got worse — diverged —
    is left out and never reaches the target; otherwise the target would be the shared starting loss).
    """
    if loss not in ds:
        raise ConfigError(f"The results have no {loss!r}; run the fine-tuning with eval_every > 0.")
    curves = ds[loss].dropna("step", how="all")
    if curves.sizes.get("step", 0) < 2:
        raise ConfigError(f"{loss!r} was evaluated at fewer than two steps; lower eval_every.")
    start = curves.isel(step=0)
    best = curves.isel(step=slice(1, None)).min("step", skipna=True)
    improving = best < start
    if not bool(improving.any()):
        raise ConfigError(f"No run improved its {loss!r} below its first value; lower the learning rates or train longer.")
    return float(best.where(improving).max(skipna=True))


def at_target(ds: xr.Dataset, target: float, loss: str = "val_loss") -> xr.Dataset:
    """Per run: the first evaluated step where ``loss`` ≤ ``target`` (``target_step``), and there the task loss
    (``loss_at_target``), the summed intruders (``intruders_at_target``, from ``intruders_total`` at that step —
    measure intruders at every eval step, ``intruders_every = eval_every``) and the forgetting
    (``forgetting_at_target`` = ``pretrain_loss`` there − at step 0). NaN for a run that never reaches it.

    >>> ds = xr.Dataset({"val_loss": (("run", "step"), [[5.0, 3.0, 2.0], [5.0, 4.0, 3.5]]),
    ...                  "intruders_total": (("run", "step"), [[0.0, 4.0, 6.0], [0.0, 1.0, 2.0]]),
    ...                  "pretrain_loss": (("run", "step"), [[2.0, 2.5, 3.0], [2.0, 2.1, 2.2]])},
    ...                 coords={"run": ["a", "b"], "step": [0, 10, 20]})
    >>> out = at_target(ds, 3.5)
    >>> out.target_step.values.tolist(), out.intruders_at_target.values.tolist(), out.forgetting_at_target.values.tolist()
    ([10.0, 20.0], [4.0, 2.0], [0.5, 0.2...])
    """
    if loss not in ds:
        raise ConfigError(f"The results have no {loss!r}; run the fine-tuning with eval_every > 0.")
    rows = {"target_step": [], "loss_at_target": [], "intruders_at_target": [], "forgetting_at_target": []}
    for run in ds.run.values:
        curve = ds[loss].sel(run=run).dropna("step").sortby("step")
        hit = curve.where(curve <= target, drop=True)
        if not hit.sizes.get("step", 0):
            for values in rows.values():
                values.append(np.nan)
            continue
        step = hit.step.values[0]
        rows["target_step"].append(float(step))
        rows["loss_at_target"].append(float(hit.isel(step=0)))
        value = ds["intruders_total"].sel(run=run, step=step) if "intruders_total" in ds else np.nan
        rows["intruders_at_target"].append(float(value))
        if "pretrain_loss" in ds:
            pl = ds.pretrain_loss.sel(run=run).dropna("step")
            start = float(pl.isel(step=0)) if pl.sizes["step"] else np.nan
            rows["forgetting_at_target"].append(float(pl.sel(step=step)) - start if step in pl.step else np.nan)
        else:
            rows["forgetting_at_target"].append(np.nan)
    out = xr.Dataset({k: ("run", v) for k, v in rows.items()}, coords={"run": ds.run.values})
    out.attrs["target_loss"] = float(target)
    return out
