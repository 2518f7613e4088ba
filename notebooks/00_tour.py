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
#     display_name: Python (workbench)
#     language: python
#     name: workbench
# ---

# %% [markdown]
# # 00 · Tour of the workbench
#
# A training run is one object you can **step**, **run**, **start/stop** in the background, **look at**,
# **save** and **resume**. This notebook builds a tiny GPT-2-style model on the built-in `stories` corpus,
# steps it by hand, trains it, reads its record (an `xarray.Dataset` over `step`), and saves the record to
# `results_path`.
#
# * `interactive = True`: the run is displayed as its live monitor (controls, Step / Run N / Start / Stop /
#   Save checkpoint, streaming loss / lr / gradient-norm plots) and trains in a background thread, so the
#   kernel stays free and Stop works.
# * `interactive = False` (papermill, CI): the same run trains with the blocking `run()`.

# %% tags=["parameters"]
model: str = "gpt2-1m"  # model preset (workbench.models.PRESETS) or a local Hugging Face model directory
dataset: str = "stories"  # built-in dataset name (workbench.data.DATASETS) or a .txt/.jsonl path
n_docs: int = 300  # training documents of the built-in corpus (small: ready in seconds)
steps: int = 60  # optimizer steps of the main run
batch_size: int = 8  # examples per step
lr: float = 1e-3  # peak learning rate (AdamW)
schedule: str = "cosine"  # learning-rate schedule: constant, cosine, linear or wsd
device: str = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
seed: int = 0  # seeds the data order and the run's RNG stream
seeds: list = [1, 2]  # the "several seeds" section: the same run again with these seeds (empty: skip it)
interactive: bool = True  # True: show the live monitor and train in the background; False: blocking run()
results_path: str = "results/00_tour.nc"  # where the run's record (xarray Dataset) is written

# %%
from workbench.notebook import check_parameters

check_parameters()  # a misspelled papermill -p name stops here, listing the valid ones
from pathlib import Path

import workbench
from workbench import Run, data

Path(results_path).parent.mkdir(parents=True, exist_ok=True)
ds = data.load(dataset, n_docs=n_docs) if dataset in data.DATASETS else data.load(dataset)
run = Run(model, ds, batch_size=batch_size, lr=lr, schedule=schedule, max_steps=steps, device=device, seed=seed,
          log_every=5, eval_every=max(1, steps // 4), label="tour")
print(run)
print(run.describe_model())

# %% [markdown]
# ## Declared parameters
# Everything configurable is a declared `param`: the same names are the monitor's controls, the papermill
# parameters, and the config stored in every record.

# %%
run.config()

# %% [markdown]
# ## One step at a time
# `step()` takes one optimizer step and returns its metrics row. The first call also sets the run up:
# it resolves the device, snapshots the initial weights W0 (for distance-from-init and intruder probes)
# and builds the optimizer.

# %%
for _ in range(3):
    row = run.step()
    print(run.global_step, {k: round(v, 4) for k, v in row.items()})

# %% [markdown]
# ## What is attached to the training loop
# Probes, checkpointing and views attach to named events; the held-out `val` split is evaluated by the
# built-in `EvalLoss` probe every `eval_every` steps.

# %%
run.show_loop();

# %% [markdown]
# ## Train
# Interactive: the run displays as its monitor (the same view as `widgets.view(run)`) and `start()` trains
# in a background thread — press **Stop** at any time; the plots stream while it trains.
# Headless: `run()` blocks until `max_steps`.

# %%
if interactive:
    from IPython.display import display

    display(run)  # the TrainingMonitor registered for Run
    run.start()
else:
    run.run()
print(run)

# %% [markdown]
# ## The record
# Every metric lands in a labelled `xarray.Dataset` over `step`, with the run's config, model, data, seed,
# versions and lineage in its attributes. (Interactive: re-run the cells below once training has stopped.)

# %%
record = run.record
record

# %%
meta = workbench.meta(record)
print({k: meta[k] for k in ("stage", "label", "status", "global_step", "seed")})
print("val loss at the evaluated steps:", record.val_loss.dropna("step").round(3).to_series().to_dict())

# %%
if not interactive:
    first, last = float(record.loss.isel(step=0)), float(record.loss.dropna("step").isel(step=-1))
    print(f"training loss {first:.3f} → {last:.3f} over {run.global_step} steps")
    assert run.status == "finished" and run.global_step == steps

# %% [markdown]
# ## Several seeds: one run is an anecdote
# The tour states no research finding, so one run is enough above. A finding needs seeds: train the same
# configuration with each seed in `seeds` (here short, headless), stack the records along a `seed` dim with
# `combine(records, over="seed")` (outer-joined on `step`), and `summarize` gives mean, sd, the 95 % CI of
# the mean and n at every step. Every gallery notebook reports its findings this way, with `finding` (a paired
# difference over seeds, a sign count and a verdict from the CI).

# %%
if seeds and run.running:  # interactive: waiting here would block the kernel (no Stop, no live plots)
    print("The run above is still training: press Stop or let it finish, then re-run this cell.")
elif seeds:
    from workbench import combine, summarize

    group = [run] + [Run(model, ds, batch_size=batch_size, lr=lr, schedule=schedule, max_steps=steps, device=device,
                         seed=int(s), log_every=5, eval_every=max(1, steps // 4), label=f"tour s{s}")
                     for s in seeds if int(s) != seed]
    for other in group[1:]:
        other.run(progress=False)
    band = summarize(combine(group, over="seed")[["loss", "val_loss"]], over="seed")
    final = band.val_loss.dropna("step", how="all").isel(step=-1)
    print(f"final val loss over {int(final.sel(stat='n'))} seeds: {float(final.sel(stat='mean')):.3f} "
          f"(95 % CI {float(final.sel(stat='ci_low')):.3f} – {float(final.sel(stat='ci_high')):.3f}, "
          f"sd {float(final.sel(stat='sd')):.3f})")
    seeds_path = Path(results_path).with_name(Path(results_path).stem + "_seeds.nc")  # next to the main record
    workbench.record.save(band, seeds_path, notebook="00_tour")
    print("seed summary written to", seeds_path)

# %% [markdown]
# ## Save the record, open it again
# `save_record` writes atomically (temp file + rename); `open_record` reads it back. In a notebook,
# `widgets.view(record)` shows it in the record view (pick a variable, compare records).

# %%
path = run.save_record(results_path)
again = workbench.open_record(path)
print(path, dict(again.sizes), list(again.data_vars))
if interactive:
    import widgets

    display(widgets.view(again))
