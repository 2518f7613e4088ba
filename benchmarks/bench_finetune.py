"""Fine-tuning lab benchmark: LoRA (r = 8) step time vs a full fine-tuning step, and each init's preprocessing cost.

Run: ``python -m benchmarks.bench_finetune`` (``--quick`` for fewer repeats). One process, alternating repeats:

* step time of LoRA r = 8 (PEFT, every attention/MLP projection) vs full fine-tuning on the built-in base
  shape (``gpt2-1m``; weights do not change the cost) — batch 16 × 64 tokens, AdamW;
* for each init, the time to build the adapter (SVDs, gradient or calibration passes on ``init_batches``
  batches — what :attr:`FineTune.init_seconds` measures) divided by one LoRA training step. PiSSA, PiSSA
  with 4 subspace iterations, LoRA-GA, LoRA-SB, EVA and CorDA on ``gpt2-1m``; OLoRA on ``llama-1m``
  (it does not support GPT-2's Conv1D).
* for each PEFT method beyond LoRA (MiSS and its bat/mini variants, FourierFT, VeRA, AdaLoRA, LoRA with the
  LoRA-FA and LoRA+ optimizers): its training step / a full fine-tuning step, and its adapter build time
  (``init_seconds``) / one full fine-tuning step, on ``gpt2-1m`` and ``llama-1m`` (MiSS on Llama only: PEFT
  refuses GPT-2's Conv1D). Budgets near LoRA r = 8's (MiSS r = 16, bat r = 8, FourierFT n = 1000, VeRA r = 256).
"""

from __future__ import annotations

import statistics
import sys
import time

from benchmarks.common import alternate, row, table

INITS = ["default", "pissa", "pissa_niter_4", "lora_ga", "lora_sb", "eva", "corda", "olora"]


def _setup(quick: bool):
    from workbench import data, models

    ds = data.load("recipes", n_docs=200 if quick else 600)
    bases = {"gpt2": models.build("gpt2-1m", data=ds), "llama": models.build("llama-1m", data=ds)}
    return ds, bases


def step_times(ds, base, repeats: int) -> dict[str, float]:
    from workbench.finetune import FineTune, fresh_copy

    common = dict(batch_size=16, eval_every=0, intruders_every=0, forget_eval="", device="cpu", max_steps=10_000)
    full = FineTune(fresh_copy(base), ds, method="full", lr=5e-4, **common)
    lora = FineTune(fresh_copy(base), ds, method="lora", rank=8, lr=2e-3, **common)
    return alternate({"full": full.step, "lora": lora.step}, repeats=repeats, warmup=2)


def init_costs(ds, bases, repeats: int, init_batches: int = 4) -> dict[str, float]:
    """Median adapter-build seconds per init, alternating inits within each repeat."""
    from workbench.finetune import FineTune, fresh_copy

    times: dict[str, list[float]] = {name: [] for name in INITS}
    for _ in range(repeats):
        for name in INITS:
            method = "lora_sb" if name == "lora_sb" else "lora"
            base = bases["llama" if name == "olora" else "gpt2"]
            ft = FineTune(fresh_copy(base), ds, method=method, init="default" if method == "lora_sb" else name, rank=8,
                          batch_size=16, init_batches=init_batches, eval_every=0, intruders_every=0, forget_eval="",
                          device="cpu")
            times[name].append(ft.init_seconds)
    return {k: statistics.median(v) for k, v in times.items()}


METHODS = {
    "lora": dict(method="lora", rank=8),
    "lora_fa": dict(method="lora", rank=8, optimizer="lora_fa"),
    "loraplus": dict(method="lora", rank=8, optimizer="loraplus"),
    "adalora": dict(method="adalora", rank=12, target_r=8),
    "miss": dict(method="miss", rank=16),
    "miss_bat": dict(method="miss", rank=8, variant="bat"),  # r must divide 344 and 128
    "miss_mini": dict(method="miss", rank=16, variant="mini", mini_r=8),
    "fourierft": dict(method="fourierft", n_frequency=1000),
    "vera": dict(method="vera", rank=256),
}


def method_rows(ds, bases, repeats: int) -> list[dict]:
    """Step time of every method / full FT's, and adapter build time / one full FT step, per base."""
    from workbench.finetune import FineTune, fresh_copy

    common = dict(batch_size=16, eval_every=0, intruders_every=0, forget_eval="", device="cpu", max_steps=10_000,
                  lr=1e-3)
    rows = []
    for fam, base in bases.items():
        runs = {"full": FineTune(fresh_copy(base), ds, method="full", **common)}
        for name, kw in METHODS.items():
            if name.startswith("miss") and fam == "gpt2":
                continue
            runs[name] = FineTune(fresh_copy(base), ds, **common, **kw)
        steps = alternate({k: r.step for k, r in runs.items()}, repeats=repeats, warmup=2)
        for name, r in runs.items():
            if name == "full":
                continue
            trainable = r.describe_model()["trainable"]
            rows.append(row("finetune", f"{name} step / full FT step ({fam}-1m)", steps[name] / steps["full"],
                            "report", True, f"{steps[name] * 1e3:.0f} ms vs {steps['full'] * 1e3:.0f} ms; "
                                            f"{trainable} trainable"))
            rows.append(row("finetune", f"{name} adapter build / full FT step ({fam}-1m)",
                            r.init_seconds / steps["full"], "report", True, f"{r.init_seconds * 1e3:.0f} ms build"))
    return rows


def run(quick: bool = False) -> list[dict]:
    ds, bases = _setup(quick)
    steps = step_times(ds, bases["gpt2"], repeats=5 if quick else 20)
    rows = [row("finetune", "LoRA r=8 step / full FT step (gpt2-1m, bs 16×64)", steps["lora"] / steps["full"],
                "≤ 1 (fewer grads)", steps["lora"] <= steps["full"],
                f"LoRA {steps['lora'] * 1e3:.0f} ms, full {steps['full'] * 1e3:.0f} ms")]
    llama_steps = step_times(ds, bases["llama"], repeats=3 if quick else 10)
    rows.append(row("finetune", "LoRA r=8 step / full FT step (llama-1m)", llama_steps["lora"] / llama_steps["full"],
                    "≤ 1 (fewer grads)", llama_steps["lora"] <= llama_steps["full"],
                    f"LoRA {llama_steps['lora'] * 1e3:.0f} ms, full {llama_steps['full'] * 1e3:.0f} ms"))
    costs = init_costs(ds, bases, repeats=1 if quick else 3)
    for name, sec in costs.items():
        ref = llama_steps["lora"] if name == "olora" else steps["lora"]
        model = "llama-1m" if name == "olora" else "gpt2-1m"
        rows.append(row("finetune", f"init {name}: adapter build / one LoRA step ({model})", sec / ref,
                        "report", True, f"{sec * 1e3:.0f} ms build, {ref * 1e3:.0f} ms step, 4 init batches"))
    rows += method_rows(ds, bases, repeats=3 if quick else 10)
    return rows


if __name__ == "__main__":
    t0 = time.perf_counter()
    print(table(run(quick="--quick" in sys.argv)))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
