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
# # LoRA vs full fine-tuning: intruder dimensions and forgetting
#
# "LoRA vs Full Fine-tuning: An Illusion of Equivalence" (Shuttleworth et al., 2024) reports that LoRA
# fine-tuned matrices gain *intruder dimensions* — new high-ranking singular vectors nearly orthogonal to
# every singular vector of the pre-trained matrix — which full fine-tuning mostly does not, that
# low-rank LoRA forgets more of the pre-training distribution, and that higher rank / rank-stabilized
# LoRA (rsLoRA) behaves more like full fine-tuning.
#
# Here: a small causal LM pre-trained on the built-in `stories` corpus (cached after the first run) is
# fine-tuned on `recipes` — a different distribution with the same tokenizer — by full fine-tuning and
# by PEFT LoRA with r ∈ {1, 8, 64} plus rsLoRA. During training the workbench records, every
# `eval_every` steps, the task loss, the held-out `stories` loss (forgetting), and the intruder count
# of every targeted matrix against the pre-trained weights W0. Same data order, same number of steps.
#
# Pass `model` = a local model folder or a Hugging Face id and `device="cuda"` to run the same study on a
# real model.

# %% tags=["parameters"]
model: str = "gpt2-1m"  # preset to pre-train on stories (cached), or an HF model folder / hub id
device: str = "auto"  # "auto" (CUDA if present), "cpu", "cuda"
ranks: list = [1, 8, 64]  # LoRA ranks compared with full fine-tuning
rslora_rank: int = 64  # rank of the extra rsLoRA run (0 = no rsLoRA run)
alpha: float = 16.0  # LoRA alpha for every run: s = alpha/r (LoRA), alpha/sqrt(r) (rsLoRA)
max_steps: int = 150  # fine-tuning steps per run (same data order for every run)
batch_size: int = 16  # examples per step
lr_full: float = 5e-4  # learning rate of full fine-tuning
lr_lora: float = 1e-2  # learning rate of the LoRA runs (best of 2e-3 / 1e-2 / 3e-2 for r=8 in a 60-step sweep)
eval_every: int = 25  # task/forgetting losses and intruders measured every this many steps
eval_batches: int = 4  # held-out batches per evaluation
n_docs: int = 2000  # recipes documents used for fine-tuning
pretrain_steps: int = 600  # pre-training steps of a preset base on stories (cached per setting)
pretrain_docs: int = 2000  # stories documents for pre-training
intruder_k: int = 10  # top-k tuned singular vectors tested (paper: 10)
intruder_eps: float = 0.5  # intruder threshold on max |cos| with W0's singular vectors (paper: 0.5)
mitigation_lams: list = [1.0, 0.75, 0.5, 0.0]  # λ values tried on the LoRA run with the most intruders ([] = skip)
seed: int = 0  # data order and adapter init
interactive: bool = True  # True: show the compare-runs panel; False: blocking runs only
results_path: str = "results/lora_vs_full.nc"  # xarray Dataset of all runs (run × step / matrix)

# %%
from workbench.notebook import check_parameters

check_parameters()  # a misspelled papermill -p name stops here, listing the valid ones
import os
import time

import numpy as np

from workbench import data, models, record
from workbench.finetune import FineTune, fresh_copy, pretrained_base
from workbench.finetune import compare
from workbench.finetune.compare import compare_runs, summary_table

t_start = time.perf_counter()
if model in models.PRESETS:
    base = pretrained_base(model, steps=pretrain_steps, n_docs=pretrain_docs, device=device)
else:
    base = models.load(model)
task = data.load("recipes", n_docs=n_docs, seed=seed)
forget = data.load("stories", n_docs=1, n_val_docs=200, seed=seed)  # held-out pre-training text
print(f"base ready in {time.perf_counter() - t_start:.0f}s: {type(base).__name__}, "
      f"{sum(p.numel() for p in base.parameters()) / 1e6:.2f}M parameters")

# %% [markdown]
# ## The runs
# Every run starts from a copy of the same base. LoRA targets every attention and MLP projection
# (`c_attn`, `c_proj`, `c_fc` for GPT-2); full fine-tuning updates every weight, but intruders and ΔW
# are measured on the same targeted matrices for all runs.

# %%
common = dict(batch_size=batch_size, max_steps=max_steps, eval_every=eval_every, eval_batches=eval_batches,
              intruders_every=eval_every, intruder_k=intruder_k, intruder_eps=intruder_eps, seed=seed,
              device=device, forget_data=forget)
settings = [dict(method="full", lr=lr_full)]
settings += [dict(method="lora", rank=int(r), alpha=alpha, lr=lr_lora) for r in ranks]
if rslora_rank:
    settings.append(dict(method="lora", rank=int(rslora_rank), alpha=alpha, use_rslora=True, lr=lr_lora))

runs = [FineTune(fresh_copy(base), task, **common, **s) for s in settings]

if interactive:
    import widgets.finetune as wf

    panel = wf.CompareRuns(runs)
    display(panel)  # noqa: F821 (notebook builtin)
    for run in runs:  # train in the background; follow() keeps the panel streaming while this cell waits
        run.start()
        panel.follow()

for run in runs:
    t0 = time.perf_counter()
    run.run(progress=False)
    print(f"{compare.run_label(run):14s} {time.perf_counter() - t0:6.1f}s  "
          f"val {run.record.val_loss.dropna('step')[-1].item():.3f}")

# %% [markdown]
# ## Results
# `forgetting` = held-out `stories` loss after fine-tuning minus before (higher = more forgotten);
# `final_intruders` = intruder dimensions summed over the targeted matrices at the last step;
# `mean_delta_effective_rank` = mean effective rank of ΔW = W − W0 over those matrices.

# %%
results = compare_runs(runs)
table = summary_table(results)
print(table.round(3).to_string())

# %%
full = results.sel(run="full")
lora = results.where(results.method == "lora", drop=True)
lines = []
more = [str(r) for r in lora.run.values if float(lora.final_intruders.sel(run=r)) > float(full.final_intruders)]
lines.append(f"Full fine-tuning: {float(full.final_intruders):.0f} intruders, forgetting {float(full.forgetting):+.3f}, "
             f"task val loss {float(full.final_val_loss):.3f}.")
lines.append(f"LoRA runs with more intruders than full FT: {more or 'none'}.")
plain = lora.where(~lora.use_rslora.astype(bool), drop=True).sortby("rank")
if plain.sizes["run"] >= 2:
    trend = np.corrcoef(np.log(plain["rank"].values.astype(float)), plain.final_intruders.values)[0, 1] \
        if np.ptp(plain.final_intruders.values) > 0 else 0.0
    lines.append("Intruders vs LoRA rank: " + ", ".join(
        f"r={int(r)}: {float(i):.0f}" for r, i in zip(plain["rank"].values, plain.final_intruders.values))
        + f" (correlation with log r: {trend:+.2f}).")
if rslora_rank:
    rs = lora.where(lora.use_rslora.astype(bool), drop=True)
    same = plain.where(plain["rank"] == rslora_rank, drop=True)
    if rs.sizes["run"] and same.sizes["run"]:
        lines.append(f"r={rslora_rank}: rsLoRA {float(rs.final_intruders[0]):.0f} intruders "
                     f"(forgetting {float(rs.forgetting[0]):+.3f}) vs LoRA {float(same.final_intruders[0]):.0f} "
                     f"(forgetting {float(same.forgetting[0]):+.3f}).")
valid = results.dropna("run", subset=["forgetting", "final_intruders"])
if valid.sizes["run"] >= 3 and np.ptp(valid.final_intruders.values) > 0 and np.ptp(valid.forgetting.values) > 0:
    rho = np.corrcoef(valid.final_intruders.values, valid.forgetting.values)[0, 1]
    lines.append(f"Across runs, correlation of intruders with forgetting: {rho:+.2f} (n = {valid.sizes['run']}; "
                 "few runs, one seed — an indication, not a test).")

# %% [markdown]
# ## Mitigation: scale the intruder components by λ and measure again
# PEFT's `reduce_intruder_dimension` behaviour (λ = 0.75 by default), applied to a merged *copy* of the LoRA
# run with the most intruders, against the true W0 (see `docs/finetune.md`). λ = 1 is the model as trained.

# %%
if mitigation_lams:
    from workbench.finetune.mitigation import mitigation_sweep

    worst = str(lora.final_intruders.idxmax("run").item())
    sweep = mitigation_sweep(runs[list(results.run.values).index(worst)], lams=mitigation_lams)
    for name in ("intruders", "val_loss", "pretrain_loss"):
        results[f"mitigation_{name}"] = sweep[name].rename(lam="mitigation_lam")
    results.attrs["mitigated_run"] = worst
    print(f"mitigation on {worst}:")
    print(sweep[["intruders", "val_loss", "pretrain_loss"]].to_dataframe().round(3).to_string())
    lo = sweep.sel(lam=min(mitigation_lams))
    hi = sweep.sel(lam=max(mitigation_lams))
    lines.append(f"Mitigation on {worst}: λ={float(hi.lam):g} → {float(lo.lam):g} changes intruders "
                 f"{float(hi.intruders):.0f} → {float(lo.intruders):.0f}, forgetting loss "
                 f"{float(hi.pretrain_loss):.3f} → {float(lo.pretrain_loss):.3f}, task loss "
                 f"{float(hi.val_loss):.3f} → {float(lo.val_loss):.3f}.")

# %%
findings = "\n".join(lines)
print(findings)

# %%
results.attrs.update(findings=findings, model=model, seconds=round(time.perf_counter() - t_start, 1))
os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
record.save(results, results_path, notebook="lora_vs_full")
print(f"saved {results_path} in {time.perf_counter() - t_start:.0f}s total")
