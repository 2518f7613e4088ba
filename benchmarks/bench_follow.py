"""Follow mode (#13): what publishing the history for a follower costs the training run.

Two identical runs (gpt2-1m, a ``weight_change`` probe every 10 steps so arrays are published too), one
publishing to a live journal (:meth:`workbench.Run.publish`), one not, trained in alternation; the ratio is
their median wall time. The default (a publish at most every second) is the goal row (≤ 1.03×); publishing
at *every* step is reported as the worst case.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from workbench import Run, data

from .common import alternate, row


def _run(ds, probe_every: int, batch_size: int) -> Run:
    run = Run("gpt2-1m", ds, batch_size=batch_size, eval_every=0, max_steps=10**6)
    run.add_probe("weight_change", every=probe_every)
    return run.setup()


def run(quick: bool = False) -> list[dict]:
    steps, repeats, batch_size = (20, 2, 8) if quick else (100, 5, 16)
    ds = data.load("stories", n_docs=400, n_val_docs=40)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plain, every_s, every_step = (_run(ds, 10, batch_size) for _ in range(3))
        every_s.publish(Path(tmp) / "a.nc", every=1.0)
        every_step.publish(Path(tmp) / "b.nc", every=0)
        times = alternate({"plain": lambda: plain.run(steps, progress=False),
                           "every 1 s": lambda: every_s.run(steps, progress=False),
                           "every step": lambda: every_step.run(steps, progress=False)}, repeats=repeats)
        size = (Path(tmp) / "b.nc.live").stat().st_size
    base = times["plain"]
    rows.append(row("follow", "publishing the history for a follower (default: every 1 s) vs not", times["every 1 s"] / base,
                    "≤ 1.03", times["every 1 s"] / base <= 1.03,
                    f"{steps} steps gpt2-1m batch {batch_size} + weight_change probe: {times['every 1 s']:.2f} s vs {base:.2f} s"))
    rows.append(row("follow", "publishing at every step (worst case) vs not", times["every step"] / base, "report", True,
                    f"{times['every step']:.2f} s vs {base:.2f} s; journal {size / 1024:.0f} KiB"))
    return rows


if __name__ == "__main__":
    from .common import table

    print(table(run(quick="--quick" in sys.argv)))
