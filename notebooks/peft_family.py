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
# # The PEFT family at matched budgets: does low-rank structure cause intruder dimensions?
#
# "LoRA vs Full Fine-tuning: An Illusion of Equivalence" finds that LoRA's fine-tuned matrices gain
# *intruder dimensions* (new top singular vectors almost orthogonal to the pre-trained ones) and that full
# fine-tuning mostly does not. PEFT's own `intruders.py` says it is "not clear whether this method
# generalizes to other delta-weight methods". This notebook asks it directly: fine-tune one pre-trained
# base on one task with methods whose update ΔW has different structure, **at matched numbers of
# trainable parameters**, over several seeds:
#
# | method | ΔW | low-rank by construction? |
# |---|---|---|
# | full FT | every weight | no |
# | LoRA (r) | s·BA | **yes** (rank ≤ r) |
# | LoRA-FA (r) | s·BA with A frozen at init | **yes** |
# | AdaLoRA (init 1.5r → mean r) | B·diag(E)·A, rank budget moved between matrices | **yes** |
# | MiSS (Bone) | one shared block D [r, out] applied to the sum of the input's r-wide chunks: ΔW = Dᵀ·[I I … I] | **yes** (rank ≤ r, with a fixed right factor) |
# | FourierFT | inverse DFT of n trainable spectral coefficients | no (dense spectral) |
# | VeRA | diag(b)·B·diag(d)·A with shared frozen random B, A | rank ≤ r_vera (here ≥ width: no) |
#
# Recorded for every run: task loss (held-out `recipes`), forgetting (held-out `stories` loss after −
# before), intruders summed over the targeted matrices, and the mean effective rank of ΔW = W − W0.
# The verdict at the end is computed from these numbers (mean ± 95 % CI over seeds, and per-seed sign
# counts), not written in advance.
#
# MiSS needs `nn.Linear` layers (PEFT 0.21.2 refuses GPT-2's Conv1D), so the base is Llama-style.

# %% tags=["parameters"]
model: str = "llama-1m"  # preset pre-trained on stories (cached), or an HF model folder / hub id (nn.Linear layers)
device: str = "auto"  # "auto" (CUDA if present), "cpu", "cuda"
seeds: list = [0, 1, 2]  # one run per method and seed (data order and adapter init)
methods: list = ["full", "lora", "lora_fa", "adalora", "miss", "fourierft", "vera"]  # methods compared
lora_rank: int = 4  # LoRA rank r; it sets the trainable-parameter budget every PEFT method is matched to
lrs: dict = {"full": 5e-4, "lora": 1e-2, "lora_fa": 1e-2, "adalora": 1e-2, "miss": 1e-2, "fourierft": 5e-2,
             "vera": 1e-2}  # learning rate per method
target_modules: list = []  # module names adapted (and measured for full FT); empty: every attention and MLP projection
max_steps: int = 60  # fine-tuning steps per run (same data order for every method of a seed)
batch_size: int = 8  # examples per step
eval_every: int = 30  # task/forgetting losses, intruders and ΔW measured every this many steps
eval_batches: int = 4  # held-out batches per evaluation
n_docs: int = 2000  # recipes documents used for fine-tuning
pretrain_steps: int = 300  # pre-training steps of a preset base on stories (cached per setting)
pretrain_docs: int = 2000  # stories documents for pre-training
intruder_k: int = 10  # top-k tuned singular vectors tested (paper: 10)
intruder_eps: float = 0.5  # intruder threshold on max |cos| with W0's singular vectors (paper: 0.5)
interactive: bool = False  # True: show the compare-runs panel while training; False: blocking runs only
results_path: str = "results/peft_family.nc"  # xarray Dataset of every run (run × step / matrix) + per-method summary

# %%
import math
import os
import time

import numpy as np
import xarray as xr
from scipy import stats

from workbench import data, models, record
from workbench.finetune import FineTune, fresh_copy, pretrained_base, resolve_targets
from workbench.finetune.adapters import shape_of
from workbench.finetune.compare import compare_runs, summary_table

t_start = time.perf_counter()
if model in models.PRESETS:
    base = pretrained_base(model, steps=pretrain_steps, n_docs=pretrain_docs, device=device)
else:
    base = models.load(model)
task = data.load("recipes", n_docs=n_docs)
forget = data.load("stories", n_docs=1, n_val_docs=200)  # held-out pre-training text
targets = resolve_targets(base, list(target_modules) or None)
shapes = [shape_of(m) for m in targets.values()]  # (out, in) per targeted matrix
print(f"base ready in {time.perf_counter() - t_start:.0f}s: {type(base).__name__}, "
      f"{sum(p.numel() for p in base.parameters()) / 1e6:.2f}M parameters, {len(targets)} targeted matrices")

# %% [markdown]
# ## Matched budgets
# LoRA r trains r·(out + in) parameters per matrix. Every other PEFT method gets its size parameter set so
# that its trainable count is as close as possible to that budget: MiSS r·out (solve for its block size r),
# FourierFT n per matrix, VeRA r_vera + out (solve for r_vera), AdaLoRA with target mean rank r (and init
# rank ⌈1.5 r⌉, the paper's ratio). LoRA-FA has LoRA's adapter but trains only B (about half). The table
# after training reports each run's actual trainable count.

# %%
n_mat = len(shapes)
budget = lora_rank * sum(o + i for o, i in shapes)
miss_rank = max(1, min(min(i for _, i in shapes), round(budget / sum(o for o, _ in shapes))))
n_frequency = max(1, min(min(o * i for o, i in shapes), budget // n_mat))
vera_rank = max(1, round((budget - sum(o for o, _ in shapes)) / n_mat))
adalora_init = min(min(min(s) for s in shapes), math.ceil(1.5 * lora_rank))
settings = {
    "full": dict(method="full"),
    "lora": dict(method="lora", rank=lora_rank, alpha=4.0 * lora_rank),
    "lora_fa": dict(method="lora", rank=lora_rank, alpha=4.0 * lora_rank, optimizer="lora_fa"),
    "adalora": dict(method="adalora", rank=adalora_init, target_r=lora_rank, alpha=4.0 * lora_rank,
                    tinit=max_steps // 10, tfinal=max_steps // 5),
    "miss": dict(method="miss", rank=miss_rank),
    "fourierft": dict(method="fourierft", n_frequency=n_frequency),
    "vera": dict(method="vera", rank=vera_rank),
}
unknown = [m for m in methods if m not in settings]
if unknown:
    raise ValueError(f"methods {unknown} are not in this notebook; use some of {list(settings)}")
# MiSS (default variant) is rank ≤ r too: its ΔW repeats the same r columns over the input (measured below).
LOW_RANK = {"lora", "lora_fa", "adalora", "miss"} | ({"vera"} if vera_rank < min(min(s) for s in shapes) else set())
print(f"budget ≈ {budget} trainable parameters: LoRA r={lora_rank}, MiSS r={miss_rank}, FourierFT n={n_frequency}, "
      f"VeRA r={vera_rank}, AdaLoRA init_r={adalora_init} → target_r={lora_rank}")
print(f"low-rank by construction: {sorted(LOW_RANK & set(methods))}")

# %% [markdown]
# ## The runs
# Every run starts from a copy of the same base; for one seed every method sees the same batches.

# %%
common = dict(batch_size=batch_size, max_steps=max_steps, eval_every=eval_every, eval_batches=eval_batches,
              intruders_every=eval_every, intruder_k=intruder_k, intruder_eps=intruder_eps, device=device,
              forget_data=forget, target_modules=list(targets))
runs, method_of, seed_of = [], {}, {}
for seed in seeds:
    for name in methods:
        label = f"{name} s{seed}"
        runs.append(FineTune(fresh_copy(base), task, seed=int(seed), lr=float(lrs[name]), label=label,
                             **common, **settings[name]))
        method_of[label], seed_of[label] = name, int(seed)

if interactive:
    import widgets.finetune as wf

    display(wf.CompareRuns(runs))  # noqa: F821 (notebook builtin)

for run in runs:
    t0 = time.perf_counter()
    run.run(progress=False)
    print(f"{run.label:14s} {time.perf_counter() - t0:6.1f}s  val {run.record.val_loss.dropna('step')[-1].item():.3f}")

# %% [markdown]
# ## Results per run
# `forgetting` = held-out `stories` loss after − before (higher = more forgotten); `final_intruders` =
# intruders summed over the targeted matrices at the last step; `mean_delta_effective_rank` = mean effective
# rank of ΔW over those matrices.

# %%
results = compare_runs(runs)
results = results.assign_coords(method_name=("run", [method_of[r] for r in results.run.values]),
                                seed=("run", [seed_of[r] for r in results.run.values]))
print(summary_table(results).round(3).to_string())

# %% [markdown]
# ## Per method: mean ± 95 % CI over seeds

# %%
METRICS = ("final_val_loss", "forgetting", "final_intruders", "mean_delta_effective_rank", "trainable")


def per_seed(name: str, metric: str) -> np.ndarray:
    """The metric of method ``name`` for every seed, in seed order."""
    return np.array([float(results[metric].sel(run=f"{name} s{s}")) for s in seeds])


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval (NaN with one seed)."""
    n = len(values)
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
    return float(values.mean()), float(half)


summary = xr.Dataset(coords={"peft_method": list(methods)})
for metric in METRICS:
    pairs = [mean_ci(per_seed(m, metric)) for m in methods]
    summary[f"{metric}_mean"] = ("peft_method", [p[0] for p in pairs])
    summary[f"{metric}_ci95"] = ("peft_method", [p[1] for p in pairs])
summary["low_rank"] = ("peft_method", [m in LOW_RANK for m in methods])
table = summary.to_dataframe()
for metric in METRICS[:4]:
    table[metric] = [f"{a:.3f} ± {b:.3f}" for a, b in zip(table[f"{metric}_mean"], table[f"{metric}_ci95"])]
print(table[["low_rank", "trainable_mean", *METRICS[:4]]].to_string())

# %% [markdown]
# ## Verdict: does low-rank structure cause intruders?
# Compared within the PEFT methods (matched budgets): each non-low-rank method against each low-rank one,
# seed by seed (the same data order), and the correlation of ΔW effective rank with intruders over every
# (method, seed) run. Full fine-tuning is the reference point.

# %%
peft = [m for m in methods if m != "full"]
low = [m for m in peft if m in LOW_RANK]
high = [m for m in peft if m not in LOW_RANK]
lines = []
for m in methods:
    mu, ci = mean_ci(per_seed(m, "final_intruders"))
    lines.append(f"{m:10s} intruders {mu:6.1f} ± {ci:.1f}   forgetting {mean_ci(per_seed(m, 'forgetting'))[0]:+.3f}   "
                 f"erank(ΔW) {mean_ci(per_seed(m, 'mean_delta_effective_rank'))[0]:6.1f}")
fewer = total = 0
for h in high:
    for lo in low:
        diff = per_seed(h, "final_intruders") - per_seed(lo, "final_intruders")  # < 0: the non-low-rank one has fewer
        n_less, n_more = int((diff < 0).sum()), int((diff > 0).sum())
        fewer, total = fewer + n_less, total + len(diff)
        lines.append(f"{h} vs {lo}: fewer intruders in {n_less}/{len(diff)} seeds, more in {n_more}, "
                     f"mean difference {diff.mean():+.1f}")
valid = results.dropna("run", subset=["final_intruders", "mean_delta_effective_rank"])
valid = valid.where(valid.method_name != "full", drop=True)
rho = float("nan")
if valid.sizes["run"] >= 3 and np.ptp(valid.final_intruders.values) > 0:
    rho = float(stats.spearmanr(valid.mean_delta_effective_rank.values, valid.final_intruders.values)[0])
    lines.append(f"Spearman correlation of erank(ΔW) with intruders over {valid.sizes['run']} PEFT runs: {rho:+.2f}")
    size = valid.delta_norm.mean("matrix").values  # how far each run moved its matrices
    rho_size = float(stats.spearmanr(size, valid.final_intruders.values)[0])
    lines.append(f"Spearman correlation of the mean ‖ΔW‖_F with intruders over the same runs: {rho_size:+.2f}")
if low and high and total:
    share = fewer / total
    low_mean = np.mean([per_seed(m, "final_intruders").mean() for m in low])
    high_mean = np.mean([per_seed(m, "final_intruders").mean() for m in high])
    if share >= 0.8 and high_mean < low_mean:
        verdict = "SUPPORTED: the methods whose ΔW is not low-rank had fewer intruders"
    elif share <= 0.2 and high_mean > low_mean:
        verdict = "CONTRADICTED: the methods whose ΔW is not low-rank had more intruders"
    else:
        verdict = "NOT SETTLED: no consistent difference between low-rank and other PEFT methods"
    lines.append(f"Verdict on 'low-rank structure causes intruders': {verdict} (fewer in {fewer}/{total} "
                 f"seed-by-seed comparisons; mean intruders {high_mean:.1f} non-low-rank vs {low_mean:.1f} low-rank; "
                 f"{len(seeds)} seeds, {max_steps} steps, {model}).")
else:
    verdict = "not computed (needs a low-rank and a non-low-rank PEFT method)"
    lines.append(f"Verdict: {verdict}.")
findings = "\n".join(lines)
print(findings)

# %%
for name in summary.data_vars:
    results[f"method_{name}"] = summary[name]
results.attrs.update(findings=findings, verdict=verdict, model=model, budget=int(budget),
                     low_rank=", ".join(sorted(LOW_RANK & set(methods))), seconds=round(time.perf_counter() - t_start, 1))
os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
record.save(results, results_path, notebook="peft_family")
print(f"saved {results_path} in {time.perf_counter() - t_start:.0f}s total")
