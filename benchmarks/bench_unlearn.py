"""Step time of each unlearning method relative to a plain fine-tuning step on the same model and batch size.

Plain step: a :class:`workbench.Run` on the forget facts (next-token loss on the answers). Each method:
an :class:`workbench.unlearn.Unlearn` step (forget batch + retain batch where the method uses one,
π_ref forwards for NPO/RMU, two forget passes with SAM). Alternating repeats in one process.

    python -m benchmarks.bench_unlearn [--quick]
"""

from __future__ import annotations

import copy
import sys

from benchmarks.common import alternate, row, table

#: (label, Unlearn params, expected cost relative to plain — the "goal" column is an upper bound)
CASES = [
    ("ga", dict(method="ga"), 1.3),
    ("graddiff", dict(method="graddiff"), 2.5),
    ("npo", dict(method="npo", retain_weight=0.0), 1.8),
    ("npo+retain", dict(method="npo", retain_weight=1.0), 3.0),
    ("simnpo", dict(method="simnpo", retain_weight=0.0), 1.3),
    ("rmu", dict(method="rmu", retain_weight=100.0), 3.5),
    ("flat", dict(method="flat"), 2.5),
    ("npo+sam", dict(method="npo", retain_weight=0.0, sam_rho=0.01), 3.5),
    ("npo+wagle", dict(method="npo", retain_weight=0.0, mask_fraction=0.1), 2.0),
    ("npo+lora8", dict(method="npo", retain_weight=0.0, lora_rank=8), 2.0),
]


def run(quick: bool = False) -> list[dict]:
    from workbench import Run, models
    from workbench.unlearn import FactsBenchmark, Unlearn

    bench = FactsBenchmark(n_entities=20)
    forget, retain = bench.split("forget", 0.1), bench.split("retain", 0.1)
    base = models.build("gpt2-1m")
    bs, steps, repeats = 8, (2 if quick else 5), (3 if quick else 5)
    plain = Run(copy.deepcopy(base), bench.dataset("forget", 0.1), batch_size=bs, eval_every=0, lr=1e-4)
    cases = CASES[:4] + CASES[7:8] if quick else CASES
    rows = []
    for label, params, goal in cases:
        st = Unlearn(copy.deepcopy(base), forget, retain, batch_size=bs, lr=1e-4, **params)
        st.setup()  # WAGLE scores / device moves are set-up, not per-step cost
        t = alternate({"plain": lambda: [plain.step() for _ in range(steps)],
                       label: lambda st=st: [st.step() for _ in range(steps)]}, repeats=repeats)
        ratio = t[label] / t["plain"]
        rows.append(row("unlearn", f"{label} step / fine-tuning step", ratio, f"≤ {goal}", ratio <= goal,
                        f"{1e3 * t[label] / steps:.1f} ms vs {1e3 * t['plain'] / steps:.1f} ms (gpt2-1m, batch {bs})"))
    return rows


if __name__ == "__main__":
    print(table(run(quick="--quick" in sys.argv)))
