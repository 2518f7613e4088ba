# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: workbench
#     language: python
#     name: workbench
# ---

# %% [markdown]
# # Train longer: distance from init vs log t, and the WSD schedule's drop at decay
#
# Two claims about how far and how well a network trains, tested over seeds:
#
# 1. **"Train longer, generalize better"** (Hoffer, Hubara & Soudry, 2017): the weights' distance from
#    their init grows like **log t** ("ultra-slow diffusion"), not like the √t of a random walk. We fit
#    `distance_from_init ≈ a + b·ln t` and `≈ a + b·√t` on the same steps of each run and compare the R².
# 2. **Warmup–stable–decay** (MiniCPM, Hu et al. 2024; Hägele et al. 2024): a run at a constant learning rate
#    with a short final linear decay ends with a **lower loss than the same run without the decay**, and the
#    drop comes in the decay. WSD and constant runs of one seed are the same run until the decay starts
#    (same init, same batches), so their difference at the end is the decay's effect alone.
#
# Substrate: a `gpt2-1m` trained from scratch with AdamW on `python_docs` — the English reference
# documentation that ships with CPython (real text nobody here wrote; no download). Every finding below is
# a paired comparison over `seeds` (mean difference, its 95 % t-interval, and in how many seeds the paper's
# direction holds); the verdict is computed from those numbers. **Budget**: the defaults (4 seeds × 2
# schedules × 300 steps) take ≈ 5 min on 2 CPU cores.

# %% tags=["parameters"]
model: str = "gpt2-1m"  # model preset trained from scratch (workbench.models.PRESETS)
dataset: str = "python_docs"  # built-in corpus (python_docs: CPython's English docs; stories; python_code)
seeds: list = [0, 1, 2, 3]  # one WSD and one constant-lr run per seed (init and data order)
steps: int = 300  # optimizer steps per run
batch_size: int = 8  # sequences per step
lr: float = 3e-3  # peak AdamW learning rate
warmup_steps: int = 20  # linear warmup (both schedules)
decay_fraction: float = 0.2  # WSD: the last 20 % of the steps decay linearly to 0
every: int = 5  # distance from init measured every this many steps
eval_every: int = 20  # held-out loss every this many steps (make it divide the decay start)
eval_batches: int = 8  # held-out batches per evaluation (the same batches each time)
fit_from: int = 20  # the log/√ fits use steps ≥ this (after warmup) and before the decay starts
device: str = "cpu"  # the model is tiny: CPU
interactive: bool = True  # True: plot the curves with their seed bands
results_path: str = "results/train_longer.nc"  # where the xarray Dataset is written

# %%
from workbench.notebook import check_parameters

check_parameters()  # a misspelled papermill -p name stops here, listing the valid ones
import os
import time

import numpy as np
import torch
import xarray as xr

from workbench import Run, data, record
from workbench.groups import ci_table, combine, finding, findings_dataset, summarize
from workbench.regime import WeightChange, log_fit

torch.set_num_threads(1)
corpus = data.load(dataset)
decay_start = steps - int(round(decay_fraction * steps))
if decay_start % eval_every:
    print(f"note: the decay starts at step {decay_start}, not a multiple of eval_every={eval_every}; "
          "the held-out loss before the decay is read at the last evaluation before it")
runs = {"wsd": [], "constant": []}
t0 = time.perf_counter()
for seed in seeds:
    for schedule in runs:
        run = Run(model, corpus, optimizer="adamw", lr=lr, schedule=schedule, warmup_steps=warmup_steps,
                  decay_fraction=decay_fraction, batch_size=batch_size, max_steps=steps, seed=int(seed),
                  eval_every=eval_every, eval_batches=eval_batches, log_every=every, device=device,
                  probes=[WeightChange(every=every)], label=f"{schedule} s{seed}")
        run.run(progress=False)
        runs[schedule].append(run)
    print(f"seed {seed}: {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# ## Runs as groups over seeds
# `combine(runs, over="seed")` stacks each schedule's records along a `seed` dim (outer-joined on `step`);
# `summarize` gives the mean and 95 % CI at every step.

# %%
keep = ["loss", "val_loss", "lr", "distance_from_init", "relative_distance_from_init"]
ds = xr.concat([combine([r.record[keep].assign_attrs(r.record.attrs) for r in runs[s]], over="seed")
                for s in runs], dim=xr.DataArray(list(runs), dims="schedule", name="schedule"),
               combine_attrs="drop_conflicts")
band = summarize(ds, over="seed")
print(f"{len(seeds)} seeds × {len(runs)} schedules × {steps} steps in {time.perf_counter() - t0:.0f} s; "
      f"decay from step {decay_start}")

# %% [markdown]
# ## 1. Distance from init: log t or √t?
# On the constant-lr runs (the WSD runs are the same until the decay), steps `fit_from` … decay start.

# %%
distance = ds.distance_from_init.sel(schedule="constant").dropna("step", how="all")
window = distance.sel(step=(distance.step >= fit_from) & (distance.step < decay_start))


def r2_of(x, y):
    """R² of the least-squares line y ≈ a + b·x."""
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    return 1.0 - float((resid**2).sum()) / float(((y - y.mean()) ** 2).sum()), float(slope)


fits = {"r2_log": [], "slope_log": [], "r2_sqrt": []}
for seed in window.seed.values:
    y = window.sel(seed=seed).dropna("step")
    t = y.step.values.astype(float)
    fit = log_fit(y.to_dataset(name="distance_from_init"), min_step=fit_from)  # the library's ln-t fit
    fits["r2_log"].append(fit["r2"])
    fits["slope_log"].append(fit["slope"])
    fits["r2_sqrt"].append(r2_of(np.sqrt(t), y.values)[0])
fit_ds = xr.Dataset({k: ("seed", v) for k, v in fits.items()}, coords={"seed": window.seed.values})
print(ci_table(fit_ds, over="seed").to_string())

# %% [markdown]
# ## 2. WSD: the loss drop at decay

# %%
val = ds.val_loss.dropna("step", how="all")
before = val.sel(step=val.step[val.step <= decay_start].max()).drop_vars("step")  # last evaluation before the decay
end = val.sel(step=val.step.max()).drop_vars("step")
wsd, const = ({"before": before.sel(schedule=s, drop=True), "end": end.sel(schedule=s, drop=True)}
              for s in ("wsd", "constant"))
drop = xr.Dataset({"val_before_decay": wsd["before"], "val_end_wsd": wsd["end"], "val_end_constant": const["end"],
                   "drop_in_decay_wsd": wsd["before"] - wsd["end"],
                   "drop_same_steps_constant": const["before"] - const["end"]})
print(ci_table(drop, over="seed").T.to_string())

# %% [markdown]
# ## Findings (one line each: did the paper's direction reproduce?)

# %%
findings = [
    finding("Train longer: distance from init fits ln t better than √t (R² log − R² √)", fit_ds.r2_log, fit_ds.r2_sqrt),
    finding("Train longer: distance from init keeps growing (log-fit slope > 0)", fit_ds.slope_log, 0.0),
    finding("WSD: the decayed run ends below the constant-lr run (val loss)", drop.val_end_wsd, drop.val_end_constant,
            expect="less"),
    finding("WSD: the loss drops during the decay (val loss at decay start − at the end > 0)", drop.drop_in_decay_wsd,
            0.0),
]
for f in findings:
    print(f["text"])

# %%
if interactive:
    import widgets  # noqa: F401 - first: offline notebook resources (BokehJS from the kernel, no CDN)

    import holoviews as hv
    import panel as pn

    pn.extension()
    hv.extension("bokeh")

    def bands(var, title, logx=False):
        """Mean ± 95 % CI over seeds of ``var`` for each schedule."""
        plots = []
        for s in band.schedule.values:
            b = band[var].sel(schedule=s).dropna("step", how="all")
            b = b.sel(step=b.step > 0) if logx else b  # no step 0 on a log axis
            steps_ = b.step.values
            plots.append(hv.Area((steps_, b.sel(stat="ci_low").values, b.sel(stat="ci_high").values),
                                 kdims=["step"], vdims=[var, f"{var}_high"], label=str(s)).opts(alpha=0.25))
            plots.append(hv.Curve((steps_, b.sel(stat="mean").values), "step", var, label=str(s)))
        return hv.Overlay(plots).opts(title=title, logx=logx, width=420, height=300, legend_position="top_right")

    display(pn.Row(bands("distance_from_init", "distance from init (log step)", logx=True),  # noqa: F821
                   bands("val_loss", "held-out loss")))

# %%
out = xr.merge([ds, band.rename({v: f"{v}_band" for v in band.data_vars}), fit_ds,
                drop, findings_dataset(findings)], compat="override", combine_attrs="drop")
out.attrs.update(findings="\n".join(f["text"] for f in findings), model=model, dataset=dataset, steps=steps, lr=lr,
                 decay_start=decay_start, seeds=[int(s) for s in seeds], interval="95 % Student t over seeds (paired)",
                 seconds=round(time.perf_counter() - t0, 1))
os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
record.save(out, results_path, notebook="train_longer")
print("wrote", results_path)
