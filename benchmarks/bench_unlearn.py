"""Unlearning costs: each method's step relative to a plain fine-tuning step, the full evaluation (every
score, privacy included) relative to one unlearning step, and the live probe at its default frequency.

Plain step: a :class:`workbench.Run` on the forget facts (next-token loss on the answers). Each method:
an :class:`workbench.unlearn.Unlearn` step (forget batch + retain batch where the method uses one,
π_ref forwards for NPO/RMU/DPO, two forget passes with SAM). Alternating repeats in one process.

* ``evaluate / step``: :func:`workbench.unlearn.evaluate` with an oracle, general text, ROUGE and all six
  membership-inference attacks (GradNorm included; the oracle's reference numbers computed once, as the
  notebook does) over one NPO step — reported, no goal.
* ``probe``: an NPO run with an :class:`UnlearnProbe` (oracle, general text, privacy on, at its default
  ``every``) against the same run without it, over whole probe periods — the steady state, one
  measurement per period (``at_start=False``: the one extra step-0 measurement of a run is not part of
  the average over a long run): goal ≤ 1.15.
* π_ref memory: bytes of the copy NPO keeps and GA/SimNPO/FLAT/WGA no longer make.

    python -m benchmarks.bench_unlearn [--quick]
"""

from __future__ import annotations

import copy
import sys
import time

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
    ("dpo", dict(method="dpo", retain_weight=0.0), 3.0),  # two answers with grad (as FLAT) + two π_ref forwards
    ("idkdpo", dict(method="idkdpo", retain_weight=0.0), 3.0),
    ("wga", dict(method="wga", retain_weight=0.0), 1.3),
    ("npo+sam", dict(method="npo", retain_weight=0.0, sam_rho=0.01), 3.5),
    ("npo+wagle", dict(method="npo", retain_weight=0.0, mask_fraction=0.1), 2.0),
    ("npo+lora8", dict(method="npo", retain_weight=0.0, lora_rank=8), 2.0),
]


def _step_ratios(base, bench, forget, retain, quick: bool) -> list[dict]:
    from workbench import Run
    from workbench.unlearn import Unlearn

    bs, steps, repeats = 8, (2 if quick else 5), (3 if quick else 5)
    plain = Run(copy.deepcopy(base), bench.dataset("forget", 0.1), batch_size=bs, eval_every=0, lr=1e-4)
    cases = [c for c in CASES if c[0] in ("ga", "npo", "dpo", "wga", "npo+sam")] if quick else CASES
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


def _evaluation_and_probe(base, bench, forget, retain, quick: bool) -> list[dict]:
    from workbench.unlearn import Unlearn, UnlearnProbe, evaluate, general_text, oracle_reference

    oracle = copy.deepcopy(base).eval().requires_grad_(False)  # any frozen model of the same size costs the same
    general = general_text(tokenizer=bench.tokenizer)
    ref = oracle_reference(oracle, bench, bench.forget_ids(0.1), bench.holdout_ids())
    st = Unlearn(copy.deepcopy(base), forget, retain, method="npo", retain_weight=0.0, batch_size=8, lr=1e-4)
    st.setup()
    t = alternate({"step": lambda: st.step(),
                   "evaluate": lambda: evaluate(st.model, bench, 0.1, oracle=oracle, general=general, rouge=True,
                                                reference=ref)}, repeats=1 if quick else 3)
    rows = [row("unlearn", "full evaluation (all scores) / one unlearning step", t["evaluate"] / t["step"], "report",
                True, f"{t['evaluate']:.2f} s vs {1e3 * t['step']:.0f} ms (npo, batch 8; 16 forget, 40 retain, "
                      f"{len(bench.holdout_ids())} holdout facts, ROUGE and GradNorm on)")]

    every = UnlearnProbe.param["every"].default
    periods = 1 if quick else 2

    def unlearn(with_probe: bool):
        probes = [UnlearnProbe(bench, oracle=oracle, general=general, at_start=False)] if with_probe else []
        run = Unlearn(copy.deepcopy(base), forget, retain, method="npo", retain_weight=0.0, batch_size=8, lr=1e-4,
                      max_steps=every * periods, probes=probes)
        run.setup()

        def go():
            t0 = time.perf_counter()
            run.run(progress=False)  # measures every `every` steps: `periods` times
            return time.perf_counter() - t0

        return go

    times = {"plain": [], "probe": []}
    for _ in range(1 if quick else 2):
        for name in times:
            times[name].append(unlearn(name == "probe")())
    plain, probed = min(times["plain"]), min(times["probe"])
    ratio = probed / plain
    rows.append(row("unlearn", f"NPO step with UnlearnProbe (every={every}, oracle, general, privacy) / without",
                    ratio, "≤ 1.15", ratio <= 1.15,
                    f"{1e3 * probed / (every * periods):.1f} vs {1e3 * plain / (every * periods):.1f} ms/step over "
                    f"{every * periods} steps ({periods} measurement{'s' if periods > 1 else ''})"))
    g = Unlearn(copy.deepcopy(base), forget, retain, method="ga")
    rows.append(row("unlearn", "π_ref bytes of GA (no copy) / of NPO", g.reference_bytes / max(st.reference_bytes, 1),
                    "0", g.reference_bytes == 0, f"{st.reference_bytes / 2**20:.2f} MiB saved per run for GA, GradDiff, "
                                                 "SimNPO, FLAT, WGA (gpt2-1m)"))
    return rows


def run(quick: bool = False) -> list[dict]:
    from workbench import models
    from workbench.unlearn import FactsBenchmark

    bench = FactsBenchmark(n_entities=40)
    forget, retain = bench.split("forget", 0.1), bench.split("retain", 0.1)
    base = models.build("gpt2-1m")
    return _step_ratios(base, bench, forget, retain, quick) + _evaluation_and_probe(base, bench, forget, retain, quick)


if __name__ == "__main__":
    print(table(run(quick="--quick" in sys.argv)))
