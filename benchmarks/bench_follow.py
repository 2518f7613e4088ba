"""Follow mode (#13): what publishing the history for a follower costs the training run.

Identical runs (gpt2-1m, a ``weight_change`` probe every 10 steps so arrays are published too), one
publishing to a live journal (:meth:`workbench.Run.publish`), one not, trained in alternation.

* The goal row (≤ 1.03×) is the in-loop cost: the CPU time the publishing callbacks take (this thread's
  ``thread_time``) against the CPU time of the training (``process_time``), as the slowdown factor
  ``train / (train − publish)``. CPU time is what the publisher takes from training, and unlike wall time it
  is not swamped by other work on a shared machine.
* The wall-time ratios of the same runs (default: a publish at most every second; every step: the worst case)
  are reported beside it; on a loaded machine they vary by ±10 % from run to run either way.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from workbench import Run, data

from .common import alternate, row


def _run(ds, probe_every: int, batch_size: int) -> Run:
    run = Run("gpt2-1m", ds, batch_size=batch_size, eval_every=0, max_steps=10**6)
    run.add_probe("weight_change", every=probe_every)
    return run.setup()


def _timed_publish(run: Run, path, every: float) -> list[float]:
    """Publish ``run`` to ``path``, adding the CPU time of each publishing callback to the returned list."""
    pub = run.publish(path, every=every)
    spent = [0.0]
    run.callbacks.remove(pub)

    def timed(fn):
        def call(*args, **kwargs):
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.thread_time() - t0
        return call

    run.add_callback("after_step", timed(pub.after_step), name="live-publish", order=1000)
    run.add_callback("after_run", timed(pub.after_run), name="live-publish-end", order=1000)
    return spent


def run(quick: bool = False) -> list[dict]:
    steps, repeats, batch_size = (20, 2, 8) if quick else (100, 5, 16)
    ds = data.load("stories", n_docs=400, n_val_docs=40)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plain, every_s, every_step = (_run(ds, 10, batch_size) for _ in range(3))
        spent = {"every 1 s": _timed_publish(every_s, Path(tmp) / "a.nc", 1.0),
                 "every step": _timed_publish(every_step, Path(tmp) / "b.nc", 0.0)}
        cpu = {"every 1 s": 0.0, "every step": 0.0}

        def train(name, r):
            def go():
                t0 = time.process_time()
                r.run(steps, progress=False)
                cpu[name] = cpu.get(name, 0.0) + time.process_time() - t0
            return go

        times = alternate({"plain": lambda: plain.run(steps, progress=False), "every 1 s": train("every 1 s", every_s),
                           "every step": train("every step", every_step)}, repeats=repeats)
        size = (Path(tmp) / "b.nc.live").stat().st_size
    base = times["plain"]
    for name, goal in (("every 1 s", "≤ 1.03"), ("every step", "report")):
        factor = cpu[name] / (cpu[name] - spent[name][0])
        what = "default: at most every 1 s" if name == "every 1 s" else "every step, the worst case"
        rows.append(row("follow", f"publishing for a follower ({what}): CPU slowdown of training", factor, goal,
                        factor <= 1.03 or goal == "report",
                        f"publishing {spent[name][0] * 1000:.0f} ms of {cpu[name]:.1f} s training CPU; wall time "
                        f"{times[name]:.2f} s vs {base:.2f} s without ({times[name] / base:.2f}×)"
                        + (f"; journal {size / 1024:.0f} KiB" if name == "every step" else "")))
    return rows


if __name__ == "__main__":
    from .common import table

    print(table(run(quick="--quick" in sys.argv)))
