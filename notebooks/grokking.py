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
# # Grokking: a lazy plateau, then a late transition
#
# "Dichotomy of Early and Late Phase Implicit Biases Can Provably Induce Grokking" (Lyu et al.): with a
# **large initialization** and **small weight decay**, training first fits the data in the kernel (lazy)
# regime — perfect train accuracy, chance test accuracy — and only much later, as weight decay shrinks the
# weights, makes a sharp transition to a rich solution that generalizes. We test three consequences on
# `(a + b) mod p` with a small MLP (`workbench.regime.grokking.tiny_mlp`, full-batch AdamW):
#
# 1. **the delay grows with the init scale** (steps from fitting the training set to generalizing);
# 2. **without weight decay there is no transition** within the same budget;
# 3. **the plateau is lazy**: the weights move less from their init before the training set is fitted than
#    between fitting and generalizing.
#
# Each condition is one run (seed 0); the checks report the fraction of cases that agree, whatever it is.

# %% tags=["parameters"]
p: int = 47  # modulus (prime); the task is (a + b) mod p on p² pairs
train_fraction: float = 0.5  # share of the pairs used for training
init_scales: list = [1.0, 2.0, 4.0]  # multipliers of the default init (every matrix, embeddings included)
weight_decay: float = 1.0  # AdamW weight decay of the main conditions
no_decay_control: bool = True  # also run the largest scale with weight decay 0
lr: float = 3e-3  # AdamW learning rate
steps: int = 4000  # full-batch steps per run (~17 ms each on one core at p = 47)
every: int = 100  # evaluate train/val accuracy and the distance from init every this many steps
d_model: int = 64  # MLP: embedding d_model // 2 per operand, hidden layer 4 · d_model
seed: int = 0
results_path: str = "results/grokking.nc"  # where the xarray Dataset is written
interactive: bool = True  # True: show the runs' monitors
device: str = "cpu"  # the MLP is tiny: CPU

# %%
from workbench.notebook import check_parameters

check_parameters()  # a misspelled papermill -p name stops here, listing the valid ones
import math
import os
import time

import pandas as pd
import torch
import xarray as xr

from workbench.record import save
from workbench.regime.grokking import grokking_run, transition_steps

torch.set_num_threads(1)
conditions = [(float(s), float(weight_decay)) for s in init_scales]
if no_decay_control:
    conditions.append((float(max(init_scales)), 0.0))
runs, t0 = {}, time.perf_counter()
for scale, wd in conditions:
    label = f"scale {scale:g}, wd {wd:g}"
    runs[label] = grokking_run(p=p, train_fraction=train_fraction, init_scale=scale, weight_decay=wd, lr=lr,
                               steps=steps, batch_size=p * p, d_model=d_model, every=every, seed=seed,
                               architecture="mlp", device=device)
    print(f"{label}: {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# ## Accuracy, weight norm and distance from init over training

# %%
keep = ["train_accuracy", "val_accuracy", "weight_norm", "relative_distance_from_init"]
ds = xr.concat([run.record[keep].dropna("step", how="all") for run in runs.values()],
               dim=pd.Index(list(runs), name="condition"))
ds = ds.assign_coords(init_scale=("condition", [c[0] for c in conditions]),
                      weight_decay=("condition", [c[1] for c in conditions]))
marks = {label: transition_steps(run.record) for label, run in runs.items()}


def distance_at(label, step):
    """Relative distance from init at ``step`` (NaN if the step never came)."""
    if not math.isfinite(step):
        return math.nan
    return float(ds.relative_distance_from_init.sel(condition=label).sel(step=step, method="nearest"))


table = pd.DataFrame({label: {**m, "distance at fit": distance_at(label, m["fit_step"]),
                              "distance at generalization": distance_at(label, m["generalize_step"])}
                      for label, m in marks.items()}).T
table

# %%
if interactive:
    import widgets  # noqa: F401 - first: offline notebook resources (BokehJS from the kernel, no CDN)

    import hvplot.xarray  # noqa: F401
    import panel as pn

    pn.extension()
    display(pn.Column(ds.val_accuracy.hvplot.line(x="step", by="condition", title="validation accuracy"),  # noqa: F821
                      ds.weight_norm.hvplot.line(x="step", by="condition", title="weight norm")))

# %% [markdown]
# ## Does this run agree with the predictions?

# %%
decayed = [label for label, (s, wd) in zip(runs, conditions) if wd > 0]  # in order of increasing scale
delays = [marks[label]["delay"] if math.isfinite(marks[label]["delay"]) else math.inf for label in decayed]
pairs = [(a, b) for a, b in zip(delays, delays[1:]) if math.isfinite(a)]  # a finite delay, then a larger scale
lazy = [table.loc[label, "distance at generalization"] - table.loc[label, "distance at fit"]
        > table.loc[label, "distance at fit"] for label in decayed if math.isfinite(marks[label]["generalize_step"])]
controls = [not math.isfinite(marks[label]["generalize_step"]) for label, (s, wd) in zip(runs, conditions) if wd == 0]
# each check: (fraction of cases that agree, number of cases); NaN when there is no case to judge
checks = {
    "the delay grows with the init scale (consecutive scales)": (sum(b >= a for a, b in pairs) / len(pairs)
                                                                 if pairs else math.nan, len(pairs)),
    "no transition without weight decay": (sum(controls) / len(controls) if controls else math.nan, len(controls)),
    "the plateau is lazy (weights move more after fitting than before)": (sum(lazy) / len(lazy) if lazy else math.nan,
                                                                          len(lazy)),
}
for name, (frac, n) in checks.items():
    print(f"{frac:5.0%} of {n} agree: {name}")
print("delays (steps):", dict(zip(decayed, delays)))

# %% [markdown]
# Read the fractions as they are, for one seed. With fewer steps than the transition needs, no delay is finite
# and the first check has no case (NaN): raise `steps` (or `lr`) before reading anything into it. Lyu et al.'s
# lazy phase needs a *large* init, so the third check may well fail at scale 1.

# %%
for column in ["fit_step", "generalize_step", "delay", "distance at fit", "distance at generalization"]:
    ds[column.replace(" ", "_")] = ("condition", table[column].astype(float).values)
for i, (name, (frac, n)) in enumerate(checks.items()):
    ds[f"agree_{i}"] = frac
    ds[f"agree_{i}"].attrs.update(description=name, cases=n)
ds.attrs.update(task=f"(a + b) mod {p}", train_fraction=train_fraction, lr=lr, steps=steps, seed=seed,
                agreement="; ".join(f"{k}: {frac:.2f} of {n}" for k, (frac, n) in checks.items()))
os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
save(ds, results_path)
print("wrote", results_path)
