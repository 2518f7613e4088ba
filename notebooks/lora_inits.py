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
# # LoRA initializations side by side: Gaussian, PiSSA, OLoRA, LoRA-GA, LoRA-SB — over seeds
#
# Same base (a small causal LM pre-trained on **real English prose**, the Python Language Reference that
# CPython ships, until its loss curve flattened; cached), same task (**real code**, the standard library's
# source), same rank, alpha, learning rate and number of steps; only the initialization of the adapter
# differs. For each seed every init sees the same batches.
#
# * **gaussian** — A ~ N(0, 1/r), B = 0 (PEFT; vanilla LoRA, the reference);
# * **PiSSA** — A, B from the top-r singular triplets of W0, the base keeps the residual (PEFT);
# * **OLoRA** — A, B from the QR decomposition of W0 (PEFT; not on GPT-2's Conv1D — use a Llama model);
# * **LoRA-GA** — A, B from the SVD of the full gradient on a few batches (PEFT `preprocess_loraga`);
# * **LoRA-SB** — fixed B, A from the SVD of the first full gradient, a trainable r×r matrix between them
#   (the workbench's own; not in PEFT).
#
# Every init is a no-op at step 0 (ΔW = W − W0 = 0, checked below). The LoRA-GA paper's claim is about
# **early-loss speed**: aligning the first step with full fine-tuning's gradient makes LoRA converge as fast as
# full fine-tuning, much faster than vanilla LoRA (PiSSA and OLoRA claim faster convergence too). So the first
# finding is the number of steps each init needs to reach a target held-out loss, mean ± 95 % CI over seeds,
# with per-seed sign counts against gaussian; then the loss after the shared budget, intruders against W0,
# forgetting, and the preprocessing cost of each init.
#
# Time budget: at the defaults 5 inits × 3 seeds × 40 steps — 45–260 s per run on the shared 2-core machine
# under load average 11–17, about 45 min wall there, much less on an idle one (base cached;
# pre-training the llama base once adds ≈ 3 CPU-minutes).

# %% tags=["parameters"]
model: str = "llama-1m"  # preset pre-trained on `pretrain_corpus` (cached), or an HF model folder / hub id
device: str = "auto"  # auto (CUDA if present), cpu, cuda
seeds: list = [0, 1, 2]  # data order and adapter init; every finding is mean ± 95 % CI over these
inits: list = ["gaussian", "pissa", "olora", "lora_ga", "lora_sb"]  # PEFT init names, or lora_sb; the first is the reference
rank: int = 8  # LoRA rank of every run
alpha: float = 16.0  # LoRA alpha (s is alpha / r)
lr: float = 2e-3  # learning rate of every run
max_steps: int = 40  # the shared budget: optimizer steps per run
batch_size: int = 16  # examples per step
init_batches: int = 4  # batches seen by data-driven inits (LoRA-GA, LoRA-SB; CorDA/EVA if listed)
eval_every: int = 5  # held-out losses measured every this many steps (the resolution of steps to target)
eval_batches: int = 2  # held-out batches per evaluation
target_loss: float = 0.0  # early-loss target on held-out code; 0 means halfway from the step-0 loss to the final loss of the reference init
pretrain_corpus: str = "python_docs"  # pre-training text of the base; forgetting is its held-out loss
task_corpus: str = "python_code"  # the fine-tuning text
pretrain_steps: int = 300  # pre-training steps of a preset base (cached per setting)
pretrain_docs: int = 2000  # documents for pre-training on a generated corpus (the python corpora use all their text)
interactive: bool = False  # True: show the compare-runs panel while training; False: blocking runs only
results_path: str = "results/lora_inits.nc"  # xarray Dataset of all runs (run × step / matrix) + the summaries

# %%
from workbench.notebook import check_parameters

check_parameters()  # a misspelled papermill -p name stops here, listing the valid ones
import json
import os
import time

import numpy as np
import pandas as pd

from workbench import data, models, record
from workbench.errors import ConfigError
from workbench.finetune import FineTune, delta_weights, fresh_copy, pretrained_base
from workbench.finetune.compare import at_target, compare_runs, summary_table
from workbench.finetune.pretrain import flattening
from workbench.groups import by_seed, direction, mean_ci_text, sign_count, sign_text, summarize

if not seeds or not inits:
    raise ConfigError("seeds and inits must be non-empty (two or more seeds for confidence intervals).")
t_start = time.perf_counter()
if model in models.PRESETS:
    base = pretrained_base(model, corpus=pretrain_corpus, steps=pretrain_steps, n_docs=pretrain_docs, device=device)
else:
    base = models.load(model)
task = data.load(task_corpus)
forget = data.load(pretrain_corpus)  # its held-out split measures forgetting
flat = flattening(getattr(base, "workbench_origin", {}))
print(f"base ready in {time.perf_counter() - t_start:.0f}s"
      + (f"; its held-out pre-training loss fell {100 * flat:.1f} % over the last 30 % of pre-training" if flat is not None else ""))

# %% [markdown]
# ## Build every adapter, check ΔW = 0 at step 0, time the preprocessing

# %%
common = dict(rank=rank, alpha=alpha, lr=lr, batch_size=batch_size, max_steps=max_steps, init_batches=init_batches,
              eval_every=eval_every, eval_batches=eval_batches, intruders_every=max_steps, device=device,
              forget_data=forget)
runs, skipped = [], {}
for seed in seeds:
    for name in inits:
        if name in skipped:
            continue
        method = "lora_sb" if name == "lora_sb" else "lora"
        try:
            run = FineTune(fresh_copy(base), task, method=method, init="default" if method == "lora_sb" else name,
                           label=f"{name} s{seed}", seed=int(seed), **common)
        except ConfigError as exc:  # e.g. OLoRA on GPT-2's Conv1D: reported, not hidden
            skipped[name] = str(exc)
            print(f"skipped {name}: {exc}")
            continue
        d0 = max(float(d.abs().max()) for d in delta_weights(run.model, run.reference, run.target_matrices).values())
        print(f"{run.label:12s} preprocessing {run.init_seconds:6.2f}s   max |ΔW| at step 0 = {d0:.1e}")
        runs.append(run)
names = [n for n in inits if n not in skipped]

if interactive:
    import widgets.finetune as wf

    display(wf.CompareRuns(runs))  # noqa: F821 (notebook builtin)

# %%
for run in runs:
    t0 = time.perf_counter()
    run.run(progress=False)
    print(f"{run.label:12s} {time.perf_counter() - t0:5.1f}s  train loss {run.loss:.3f}")

# %% [markdown]
# ## Per run, and steps to the target loss
# `target_step` is the first evaluated step whose held-out code loss is at or below the target (NaN: not reached
# within the budget — counted as slower than any run that did, at `max_steps + eval_every`, in the comparisons).

# %%
results = compare_runs(runs)
labels = [str(r) for r in results.run.values]
results = results.assign_coords(init_name=("run", [lab.rsplit(" s", 1)[0] for lab in labels]),
                                seed=("run", [int(lab.rsplit(" s", 1)[1]) for lab in labels]))
reference = names[0]
if target_loss > 0:
    target = float(target_loss)
else:  # halfway from the shared step-0 loss to where the reference init ends
    ref = results.where(results.init_name == reference, drop=True)
    start = float(ref.val_loss.dropna("step", how="all").isel(step=0).mean())
    target = 0.5 * (start + float(ref.final_val_loss.mean()))
results = results.assign({k: ("run", v.values) for k, v in at_target(results, target).data_vars.items()})
results["steps_to_target"] = results.target_step.fillna(max_steps + eval_every)
results.attrs["target_loss"] = target
print(summary_table(results).round(3).to_string())
print(f"target: held-out {task_corpus} loss {target:.3f}")

# %% [markdown]
# ## Mean ± 95 % CI over seeds, per init

# %%
METRICS = ("steps_to_target", "final_val_loss", "forgetting", "final_intruders", "mean_delta_effective_rank",
           "init_seconds")
grid = by_seed(results[list(METRICS)], by="init_name")  # init × seed
table = {m: [mean_ci_text(grid[m].sel(init_name=n).values, 3 if "loss" in m or "forgetting" in m else 1) for n in names]
         for m in METRICS}
print(pd.DataFrame(table, index=names).to_string())
summary = summarize(grid.sel(init_name=names), over="seed")  # stat (mean, sd, ci_low, ci_high, n) × init

# %% [markdown]
# ## Findings: did the papers' direction reproduce?
# Each init against the reference (gaussian), paired by seed: *reproduced* when ≥ 80 % of the seeds go the
# claimed way and the 95 % CI of the mean difference excludes 0, *opposite* when that holds the other way,
# else *not settled*.

# %%
CLAIMS = {"lora_ga": "LoRA-GA", "pissa": "PiSSA", "olora": "OLoRA", "lora_sb": "LoRA-SB"}
lines, verdicts = [], {}
for name in names[1:]:
    paper = CLAIMS.get(name, name)
    for metric, what in (("steps_to_target", f"reaches held-out loss {target:.2f} in fewer steps"),
                         ("final_val_loss", f"ends lower after {max_steps} steps")):
        sc = sign_count(grid[metric].sel(init_name=name), grid[metric].sel(init_name=reference))
        verdict = direction(sc, "less")
        verdicts[f"{name} {metric}"] = verdict
        lines.append(f"[{verdict.upper()}] {name} {what} than {reference} ({paper}'s claim): "
                     f"{sign_text(sc, name, reference, metric)}; {name} {mean_ci_text(grid[metric].sel(init_name=name).values)}, "
                     f"{reference} {mean_ci_text(grid[metric].sel(init_name=reference).values)}")
for name in names:
    lines.append(f"{name}: intruders {mean_ci_text(grid.final_intruders.sel(init_name=name).values, 1)}, forgetting "
                 f"{mean_ci_text(grid.forgetting.sel(init_name=name).values, 3, signed=True)}, erank(ΔW) "
                 f"{mean_ci_text(grid.mean_delta_effective_rank.sel(init_name=name).values, 1)}, preprocessing "
                 f"{mean_ci_text(grid.init_seconds.sel(init_name=name).values, 2)} s")
missed = np.isnan(results.target_step.values)
not_reached = {n: int(missed[results.init_name.values == n].sum()) for n in names}
not_reached = {n: k for n, k in not_reached.items() if k}
if not_reached:
    lines.append(f"Runs that did not reach the target within {max_steps} steps (per init): {not_reached}")
if skipped:
    lines.append("Skipped: " + "; ".join(f"{k} ({v.split(';')[0]})" for k, v in skipped.items()))
findings = "\n".join(lines)
print(findings)

# %%
for name in summary.data_vars:  # mean ± CI per init: init_<metric> over (stat, lora_init)
    results[f"init_{name}"] = summary[name].rename(init_name="lora_init")
results.attrs.update(findings=findings, verdicts=json.dumps(verdicts), model=model, skipped=str(skipped),
                     seeds=json.dumps([int(s) for s in seeds]), pretrain_flattening=-1.0 if flat is None else flat,
                     seconds=round(time.perf_counter() - t_start, 1))
os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
record.save(results, results_path, notebook="lora_inits")
print(f"saved {results_path} in {time.perf_counter() - t_start:.0f}s total")
