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
# # LoRA initializations side by side: Gaussian, PiSSA, OLoRA, LoRA-GA, LoRA-SB
#
# Same base (a small causal LM pre-trained on `stories`, cached), same task (`recipes`), same rank,
# alpha, learning rate, data order and number of steps; only the initialization of the adapter differs:
#
# * **gaussian** — A ~ N(0, 1/r), B = 0 (PEFT);
# * **PiSSA** — A, B from the top-r singular triplets of W0, the base keeps the residual (PEFT);
# * **OLoRA** — A, B from the QR decomposition of W0 (PEFT; not on GPT-2's Conv1D — use a Llama model);
# * **LoRA-GA** — A, B from the SVD of the full gradient on a few batches (PEFT `preprocess_loraga`);
# * **LoRA-SB** — fixed B, A from the SVD of the first full gradient, a trainable r×r matrix between them
#   (the workbench's own; not in PEFT).
#
# Every init is a no-op at step 0 (ΔW = W − W0 = 0, checked below), so the comparison is about where
# training goes: task loss after N steps, intruder dimensions against W0, and the effective rank of ΔW.
# The preprocessing cost of each init is timed too.

# %% tags=["parameters"]
model: str = "llama-1m"  # preset to pre-train on stories (cached), or an HF model folder / hub id
device: str = "auto"  # "auto" (CUDA if present), "cpu", "cuda"
inits: list = ["gaussian", "pissa", "olora", "lora_ga", "lora_sb"]  # PEFT init names, or "lora_sb"
rank: int = 8  # LoRA rank of every run
alpha: float = 16.0  # LoRA alpha (s = alpha / r)
lr: float = 2e-3  # learning rate of every run
max_steps: int = 120  # the shared budget: optimizer steps per run
batch_size: int = 16  # examples per step
init_batches: int = 4  # batches seen by data-driven inits (LoRA-GA, LoRA-SB; CorDA/EVA if listed)
eval_every: int = 20  # losses, intruders and ΔW measured every this many steps
eval_batches: int = 4  # held-out batches per evaluation
n_docs: int = 2000  # recipes documents for fine-tuning
pretrain_steps: int = 600  # pre-training steps of a preset base (cached per setting)
pretrain_docs: int = 2000  # stories documents for pre-training
seed: int = 0  # data order and adapter init
interactive: bool = True  # True: show the compare-runs panel; False: blocking runs only
results_path: str = "results/lora_inits.nc"  # xarray Dataset of all runs (run × step / matrix)

# %%
from workbench.notebook import check_parameters

check_parameters()  # a misspelled papermill -p name stops here, listing the valid ones
import os
import time

from workbench import data, models, record
from workbench.errors import ConfigError
from workbench.finetune import FineTune, delta_weights, fresh_copy, pretrained_base
from workbench.finetune.compare import compare_runs, summary_table

t_start = time.perf_counter()
if model in models.PRESETS:
    base = pretrained_base(model, steps=pretrain_steps, n_docs=pretrain_docs, device=device)
else:
    base = models.load(model)
task = data.load("recipes", n_docs=n_docs, seed=seed)
forget = data.load("stories", n_docs=1, n_val_docs=200, seed=seed)
print(f"base ready in {time.perf_counter() - t_start:.0f}s")

# %% [markdown]
# ## Build every adapter, check ΔW = 0 at step 0, time the preprocessing

# %%
common = dict(rank=rank, alpha=alpha, lr=lr, batch_size=batch_size, max_steps=max_steps, init_batches=init_batches,
              eval_every=eval_every, eval_batches=eval_batches, intruders_every=eval_every, seed=seed, device=device,
              forget_data=forget)
runs, skipped = [], {}
for name in inits:
    method = "lora_sb" if name == "lora_sb" else "lora"
    try:
        run = FineTune(fresh_copy(base), task, method=method, init="default" if method == "lora_sb" else name,
                       label=name, **common)
    except ConfigError as exc:  # e.g. OLoRA on GPT-2's Conv1D: reported, not hidden
        skipped[name] = str(exc)
        print(f"skipped {name}: {exc}")
        continue
    d0 = max(float(d.abs().max()) for d in delta_weights(run.model, run.reference, run.target_matrices).values())
    print(f"{name:10s} preprocessing {run.init_seconds:6.2f}s   max |ΔW| at step 0 = {d0:.1e}")
    runs.append(run)

if interactive:
    import widgets.finetune as wf

    panel = wf.CompareRuns(runs)
    display(panel)  # noqa: F821 (notebook builtin)
    for run in runs:  # train in the background; follow() keeps the panel streaming while this cell waits
        run.start()
        panel.follow()

# %%
for run in runs:
    t0 = time.perf_counter()
    run.run(progress=False)
    print(f"{run.label:10s} {time.perf_counter() - t0:5.1f}s  train loss {run.loss:.3f}")

# %% [markdown]
# ## Results after the same budget

# %%
results = compare_runs(runs)
print(summary_table(results).round(3).to_string())

# %%
order = results.final_val_loss.sortby(results.final_val_loss)
lines = ["Task val loss after %d steps (best first): " % max_steps
         + ", ".join(f"{r}: {float(v):.3f}" for r, v in zip(order.run.values, order.values))]
lines.append("Intruders (sum over targeted matrices): "
             + ", ".join(f"{r}: {float(v):.0f}" for r, v in zip(results.run.values, results.final_intruders.values)))
lines.append("Mean effective rank of ΔW: "
             + ", ".join(f"{r}: {float(v):.2f}" for r, v in zip(results.run.values,
                                                                results.mean_delta_effective_rank.values)))
lines.append("Forgetting (stories loss change): "
             + ", ".join(f"{r}: {float(v):+.3f}" for r, v in zip(results.run.values, results.forgetting.values)))
if skipped:
    lines.append("Skipped: " + "; ".join(f"{k} ({v.split(';')[0]})" for k, v in skipped.items()))
findings = "\n".join(lines)
print(findings)

# %%
results.attrs.update(findings=findings, model=model, skipped=str(skipped),
                     seconds=round(time.perf_counter() - t_start, 1))
os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
record.save(results, results_path, notebook="lora_inits")
print(f"saved {results_path} in {time.perf_counter() - t_start:.0f}s total")
