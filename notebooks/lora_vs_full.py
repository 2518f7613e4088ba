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
# # LoRA vs full fine-tuning: intruder dimensions and forgetting, over seeds
#
# "LoRA vs Full Fine-tuning: An Illusion of Equivalence" (Shuttleworth et al., 2024) reports that
# (1) LoRA fine-tuned matrices gain *intruder dimensions* — new high-ranking singular vectors nearly
# orthogonal to every singular vector of the pre-trained matrix — which full fine-tuning does not;
# (2) at the same task performance, LoRA models with intruders are worse models of the pre-training
# distribution (they forget more); (3) higher-rank, rank-stabilized LoRA mirrors full fine-tuning.
# The paper sets alpha = 2r (LoRA scale s = alpha/r = 2 at every rank) and compares at matched task
# performance, with r ≤ 8 vs r = 64 on models 768–4096 wide.
#
# Here: a small causal LM pre-trained on **real English prose** — the Python Language Reference that
# CPython ships (`python_docs`) — until its loss curve flattened (cached), then fine-tuned on **real
# code**, the standard library's source (`python_code`): general text → code, the direction of the
# paper's code fine-tuning. Full fine-tuning and PEFT LoRA at every rank in `ranks` under three
# scalings side by side — **fixed** alpha (s = alpha/r), the paper's **alpha = 2r** (s = 2) and **rsLoRA**
# (s = alpha/√r) — over `seeds` (data order and adapter init; every run of a seed sees the same batches).
# Each finding is reported **at equal steps** (the end of training) and **at matched task loss** (each
# run's first evaluated step whose held-out code loss reaches a common target) as mean ± 95 % CI over
# seeds with per-seed sign counts, and one line per finding says whether the paper's direction reproduced.
#
# Time budget: at the defaults 5 runs × 3 seeds × 40 steps — measured 44 min wall on the shared 2-core machine
# under load average 11–17 (≈ 25–200 s per run), a fraction of that on an idle one (base cached;
# pre-training the base once adds ≈ 3 CPU-minutes). `wide_model="gpt2-wide"` (2 layers × d = 512) adds
# full FT and alpha = 2r LoRA runs at r/d down to 0.002 — the paper's range — at ≈ 5× the cost per run.
# Pass `model` = a local model folder or a Hugging Face id and `device="cuda"` for a real model.

# %% tags=["parameters"]
model: str = "gpt2-1m"  # preset pre-trained on `pretrain_corpus` (cached), or an HF model folder / hub id
wide_model: str = ""  # a second, wider preset (e.g. gpt2-wide, d 512) run with full FT and alpha 2r LoRA; empty: none
device: str = "auto"  # auto (CUDA if present), cpu, cuda
seeds: list = [0, 1, 2]  # data order and adapter init; every finding is mean ± 95 % CI over these
ranks: list = [1, 64]  # LoRA ranks compared with full fine-tuning (the paper: r ≤ 8 vs r 64)
scalings: list = ["fixed", "2r", "rslora"]  # how alpha follows r: fixed alpha, alpha 2r (the paper), rsLoRA
alpha: float = 16.0  # alpha of the fixed (s is alpha/r) and rslora (s is alpha/√r) scalings
max_steps: int = 40  # fine-tuning steps per run (equal-steps comparison at the last one)
batch_size: int = 16  # examples per step
lr_full: float = 5e-4  # learning rate of full fine-tuning
lr_lora: float = 1e-2  # learning rate of every LoRA run (best of 2e-3 / 1e-2 / 3e-2 for r 8, s 2 in an earlier 60-step sweep)
eval_every: int = 10  # task/forgetting losses and intruders measured every this many steps (matched-loss resolution)
eval_batches: int = 2  # held-out batches per evaluation
target_loss: float = 0.0  # matched-loss target on held-out code; 0 means the loss every run reaches (the largest of the best losses of the runs)
pretrain_corpus: str = "python_docs"  # pre-training text of the base; forgetting is its held-out loss
task_corpus: str = "python_code"  # the fine-tuning text
pretrain_steps: int = 300  # pre-training steps of a preset base (cached per setting; see the curve below)
pretrain_docs: int = 2000  # documents for pre-training on a generated corpus (the python corpora use all their text)
intruder_k: int = 10  # top-k tuned singular vectors tested (paper: 10)
target_modules: list = []  # module names adapted (and measured for full FT); empty means every attention and MLP projection
intruder_eps: float = 0.5  # intruder threshold on max |cos| with the singular vectors of W0 (paper: 0.5)
mitigation_lams: list = [1.0, 0.5, 0.0]  # λ tried on the LoRA run of the first seed with the most intruders; empty: skip
interactive: bool = False  # True: show the compare-runs panel while training; False: blocking runs only
results_path: str = "results/lora_vs_full.nc"  # xarray Dataset of every run (run × step / matrix) + the summaries

# %%
from workbench.notebook import check_parameters

check_parameters()  # a misspelled papermill -p name stops here, listing the valid ones
import json
import math
import os
import time

import pandas as pd

from workbench import data, models, record
from workbench.errors import ConfigError
from workbench.finetune import FineTune, fresh_copy, pretrained_base
from workbench.finetune.compare import at_target, common_target, compare_runs, summary_table
from workbench.finetune.pretrain import flattening
from workbench.groups import by_seed, direction, mean_ci_text, sign_count, sign_text, summarize

if not seeds:
    raise ConfigError("seeds is empty: give at least one seed (two or more for confidence intervals).")
unknown = sorted(set(scalings) - {"fixed", "2r", "rslora"})
if unknown:
    raise ConfigError(f"Unknown scaling(s) {unknown}; use some of 'fixed', '2r', 'rslora'.")

t_start = time.perf_counter()


def base_for(name: str):
    """The pre-trained base: a preset trained on ``pretrain_corpus`` (cached), or a model folder / hub id as is."""
    if name in models.PRESETS:
        return pretrained_base(name, corpus=pretrain_corpus, steps=pretrain_steps, n_docs=pretrain_docs, device=device)
    return models.load(name)


base = base_for(model)
task = data.load(task_corpus)
forget = data.load(pretrain_corpus)  # its held-out split measures forgetting
origin = getattr(base, "workbench_origin", {}) or {}
curve = origin.get("curve") or {}
print(f"base ready in {time.perf_counter() - t_start:.0f}s: {type(base).__name__}, "
      f"{sum(p.numel() for p in base.parameters()) / 1e6:.2f}M parameters; task {task_corpus} "
      f"({task.info.get('n_tokens')} tokens), forgetting on {pretrain_corpus} ({forget.info.get('n_tokens')} tokens)")

# %% [markdown]
# ## The base: trained until its loss curve flattened
# Held-out `python_docs` loss at ten evenly spaced pre-training steps (saved with the cached base). The
# number to read is how much it still fell over the last 30 % of the steps, relative to its final value.

# %%
flat = flattening(origin)
if curve.get("step"):
    print("pre-training held-out loss: " + ", ".join(f"{s}: {v:.3f}" for s, v in zip(curve["step"], curve["val_loss"])))
    print(f"fell {100 * flat:.1f} % of its final value over the last 30 % of pre-training" if flat is not None else "")
else:
    print("this base has no recorded pre-training curve (loaded as is)")

# %% [markdown]
# ## The runs
# One run per distinct (rank, scale s): where two scalings give the same s at a rank (fixed alpha = 16 and
# alpha = 2r both give s = 2 at r = 8) they are the same training run, counted under both. LoRA targets
# every attention and MLP projection; full fine-tuning updates every weight, and intruders and ΔW are
# measured on the same targeted matrices for all runs.


# %%
def scale_of(scaling: str, r: int) -> float:
    """LoRA's scale s = alpha_eff / r for a scaling protocol at rank r."""
    return {"fixed": alpha / r, "2r": 2.0, "rslora": alpha / math.sqrt(r)}[scaling]


def lora_setting(r: int, s: float) -> str:
    return f"lora r={r} s={s:.3g}"


def plan(ranks_: list, scalings_: list) -> tuple[dict, dict]:
    """``{setting: FineTune kwargs}`` (distinct runs) and ``{(scaling, r): setting}``."""
    settings, which = {"full": dict(method="full", lr=lr_full)}, {}
    for r in map(int, ranks_):
        for sc in scalings_:
            s = scale_of(sc, r)
            name = lora_setting(r, s)
            # rsLoRA's alpha/√r is reproduced exactly by plain LoRA with alpha' = s·r (same update rule)
            settings.setdefault(name, dict(method="lora", rank=r, alpha=s * r, lr=lr_lora))
            which[(sc, r)] = name
    return settings, which


common = dict(batch_size=batch_size, max_steps=max_steps, eval_every=eval_every, eval_batches=eval_batches,
              intruders_every=eval_every, intruder_k=intruder_k, intruder_eps=intruder_eps, device=device,
              forget_data=forget, target_modules=list(target_modules) or None)


def train(base_model, settings: dict, prefix: str = "") -> list:
    """Every setting × seed from copies of ``base_model``; returns the finished runs (labels ``<setting> s<seed>``)."""
    runs = [FineTune(fresh_copy(base_model), task, seed=int(seed), label=f"{prefix}{name} s{seed}", **common, **kw)
            for seed in seeds for name, kw in settings.items()]
    if interactive:
        import widgets.finetune as wf

        display(wf.CompareRuns(runs))  # noqa: F821 (notebook builtin)
    for run in runs:
        t0 = time.perf_counter()
        run.run(progress=False)
        print(f"{run.label:24s} {time.perf_counter() - t0:6.1f}s  val {run.record.val_loss.dropna('step')[-1].item():.3f}")
    return runs


settings, which = plan(ranks, scalings)
print(f"{len(settings)} distinct runs per seed: {', '.join(settings)}")
runs = train(base, settings)

# %% [markdown]
# ## Per run, and the matched-loss point
# `forgetting` = held-out `python_docs` loss after fine-tuning − before (higher = more forgotten);
# `final_intruders` = intruders summed over the targeted matrices at the last step; `*_at_target` = the
# same at each run's first evaluated step whose held-out code loss reaches the common target.

# %%
results = compare_runs(runs)
labels = [str(r) for r in results.run.values]
results = results.assign_coords(setting=("run", [lab.rsplit(" s", 1)[0] for lab in labels]),
                                seed=("run", [int(lab.rsplit(" s", 1)[1]) for lab in labels]))
target = float(target_loss) if target_loss > 0 else common_target(results)
results = results.assign({k: ("run", v.values) for k, v in at_target(results, target).data_vars.items()})
results.attrs["target_loss"] = target
print(summary_table(results).round(3).to_string())
print(f"matched-loss target: held-out {task_corpus} loss {target:.3f}")
print(results[["target_step", "intruders_at_target", "forgetting_at_target"]].to_dataframe().round(3).to_string())

# %% [markdown]
# ## Mean ± 95 % CI over seeds, per setting

# %%
METRICS = ("final_val_loss", "forgetting", "final_intruders", "mean_delta_effective_rank", "target_step",
           "intruders_at_target", "forgetting_at_target")
grid = by_seed(results[list(METRICS)], by="setting")  # setting × seed
order = list(settings)
table = {m: [mean_ci_text(grid[m].sel(setting=s).values, 3 if "loss" in m or "forgetting" in m else 1) for s in order]
         for m in METRICS}
print(pd.DataFrame(table, index=order).to_string())
summary = summarize(grid.sel(setting=order), over="seed")  # stat (mean, sd, ci_low, ci_high, n) × setting

# %% [markdown]
# ## Findings: did the paper's direction reproduce?
# Each line: the paired difference over seeds (same batches within a seed), its 95 % CI, the per-seed sign
# count, and the verdict — *reproduced* when ≥ 80 % of the seeds go the paper's way and the CI excludes 0,
# *opposite* when that holds the other way, else *not settled*.

# %%
lines, verdicts = [], {}


def finding(key: str, a: str, b: str, metric: str, expected: str, claim: str, where: str) -> None:
    """One line: ``a`` vs ``b`` in ``metric`` over seeds, against the paper's ``expected`` sign of a − b."""
    if a not in grid.setting or b not in grid.setting:
        return
    sc = sign_count(grid[metric].sel(setting=a), grid[metric].sel(setting=b))
    verdict = direction(sc, expected)
    verdicts[key] = verdict
    lines.append(f"[{verdict.upper()}] {claim} ({where}): {sign_text(sc, a, b, metric)}; "
                 f"{a} {mean_ci_text(grid[metric].sel(setting=a).values)}, {b} {mean_ci_text(grid[metric].sel(setting=b).values)}")


low = [int(r) for r in ranks if int(r) <= 8]
high = max(int(r) for r in ranks)
for sc_name in [s for s in ("2r", "fixed", "rslora") if s in scalings]:
    for r in low:
        name = which[(sc_name, r)]
        finding(f"intruders {sc_name} r={r} equal", name, "full", "final_intruders", "greater",
                f"LoRA ({sc_name}) has more intruders than full FT", f"equal steps, {max_steps}")
        finding(f"intruders {sc_name} r={r} matched", name, "full", "intruders_at_target", "greater",
                f"LoRA ({sc_name}) has more intruders than full FT", f"matched loss {target:.2f}")
        finding(f"forgetting {sc_name} r={r} matched", name, "full", "forgetting_at_target", "greater",
                f"LoRA ({sc_name}) forgets more than full FT", f"matched loss {target:.2f}")
    for r in [r for r in low if r < high]:
        hi_name, lo_name = which[(sc_name, high)], which[(sc_name, r)]
        finding(f"rank {sc_name} r={r} equal", hi_name, lo_name, "final_intruders", "less",
                f"higher rank ({sc_name}) has fewer intruders", f"equal steps, {max_steps}")
        finding(f"rank {sc_name} r={r} matched", hi_name, lo_name, "intruders_at_target", "less",
                f"higher rank ({sc_name}) has fewer intruders", f"matched loss {target:.2f}")
reached = {s: int(grid.target_step.sel(setting=s).notnull().sum()) for s in order}
missed = {s: f"{k}/{len(seeds)}" for s, k in reached.items() if k < len(seeds)}
if missed:
    lines.append(f"Runs that never reached the matched-loss target {target:.3f} (left out of the matched-loss lines): {missed}")

# %% [markdown]
# ## The wider model: rank-to-width ratio in the paper's range
# Full FT and alpha = 2r LoRA at every rank on `wide_model` (skipped when empty), from a base pre-trained the
# same way; r/d is the rank over the model width.

# %%
wide = None
if wide_model:
    wide_base = base_for(wide_model)
    width = int(getattr(wide_base.config, "hidden_size", 0) or getattr(wide_base.config, "n_embd", 0))
    wide_settings, wide_which = plan(ranks, ["2r"])
    wide_runs = train(wide_base, wide_settings, prefix="wide ")
    wide = compare_runs(wide_runs)
    wlabels = [str(r) for r in wide.run.values]
    wide = wide.assign_coords(setting=("run", [lab[len("wide "):].rsplit(" s", 1)[0] for lab in wlabels]),
                              seed=("run", [int(lab.rsplit(" s", 1)[1]) for lab in wlabels]))
    wide_target = float(target_loss) if target_loss > 0 else common_target(wide)
    wide = wide.assign({k: ("run", v.values) for k, v in at_target(wide, wide_target).data_vars.items()})
    wgrid = by_seed(wide[["final_intruders", "intruders_at_target", "forgetting_at_target", "final_val_loss"]], by="setting")
    for r in low:
        name = wide_which[("2r", r)]
        sc = sign_count(wgrid.intruders_at_target.sel(setting=name), wgrid.intruders_at_target.sel(setting="full"))
        verdicts[f"wide intruders 2r r={r} matched"] = direction(sc, "greater")
        lines.append(f"[{direction(sc, 'greater').upper()}] LoRA (2r) has more intruders than full FT ({wide_model}, "
                     f"r/d = {r / width:.3g}, matched loss {wide_target:.2f}): "
                     f"{sign_text(sc, name, 'full', 'intruders_at_target')}")
        if high > r:
            sc = sign_count(wgrid.intruders_at_target.sel(setting=wide_which[("2r", high)]),
                            wgrid.intruders_at_target.sel(setting=name))
            verdicts[f"wide rank 2r r={r} matched"] = direction(sc, "less")
            lines.append(f"[{direction(sc, 'less').upper()}] higher rank (2r) has fewer intruders ({wide_model}, r/d = "
                         f"{high / width:.3g} vs {r / width:.3g}, matched loss {wide_target:.2f}): "
                         f"{sign_text(sc, wide_which[('2r', high)], name, 'intruders_at_target')}")
    print(f"{wide_model}: width {width}, r/d = " + ", ".join(f"{int(r) / width:.3g}" for r in ranks))

# %% [markdown]
# ## Mitigation: scale the intruder components by λ and measure again
# PEFT's `reduce_intruder_dimension` behaviour, applied to a merged *copy* of seed 0's LoRA run with the most
# intruders, against the true W0 (see `docs/finetune.md`). λ = 1 is the model as trained.

# %%
if mitigation_lams:
    from workbench.finetune.mitigation import mitigation_sweep

    first = results.where(results.seed == int(seeds[0]), drop=True)
    first = first.where(first.method == "lora", drop=True)
    worst = str(first.final_intruders.idxmax("run").item())
    sweep = mitigation_sweep(runs[labels.index(worst)], lams=mitigation_lams)
    for name in ("intruders", "val_loss", "pretrain_loss"):
        results[f"mitigation_{name}"] = sweep[name].rename(lam="mitigation_lam")
    results.attrs["mitigated_run"] = worst
    print(f"mitigation on {worst}:")
    print(sweep[["intruders", "val_loss", "pretrain_loss"]].to_dataframe().round(3).to_string())
    lo, hi = sweep.sel(lam=min(mitigation_lams)), sweep.sel(lam=max(mitigation_lams))
    lines.append(f"Mitigation on {worst} (one run): λ={float(hi.lam):g} → {float(lo.lam):g} changes intruders "
                 f"{float(hi.intruders):.0f} → {float(lo.intruders):.0f}, forgetting loss {float(hi.pretrain_loss):.3f} → "
                 f"{float(lo.pretrain_loss):.3f}, task loss {float(hi.val_loss):.3f} → {float(lo.val_loss):.3f}.")

# %%
findings = "\n".join(lines)
print(findings)

# %%
for name in summary.data_vars:  # mean ± CI per setting: setting_<metric> over (stat, setting_name)
    results[f"setting_{name}"] = summary[name].rename(setting="setting_name")
if wide is not None:
    for name in ("final_intruders", "intruders_at_target", "forgetting_at_target", "target_step", "final_val_loss"):
        results[f"wide_{name}"] = wide[name].drop_vars(["setting", "seed"]).rename(run="wide_run")
results.attrs.update(findings=findings, verdicts=json.dumps(verdicts), model=model, wide_model=wide_model,
                     seeds=json.dumps([int(s) for s in seeds]), pretrain_flattening=-1.0 if flat is None else flat,
                     seconds=round(time.perf_counter() - t_start, 1))
os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
record.save(results, results_path, notebook="lora_vs_full")
print(f"saved {results_path} in {time.perf_counter() - t_start:.0f}s total")
