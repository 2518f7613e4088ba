"""Beyond one device (#13), on this CPU: two-process DDP vs one process, gradient accumulation, torch.compile.

* DDP: ``workbench train --nproc-per-node 2`` (two gloo processes, one thread each) vs one process
  (one thread), same global batch; the time compared is the record's ``wall_time`` (seconds inside
  training steps), so process start-up and data loading are not counted. On 2 cores shared with other
  work this shows the communication overhead more than any speed-up.
* Gradient accumulation: ``grad_accum_steps=4`` vs 1 on the same global batch (in-process, alternating).
* ``torch.compile``: steps after compilation vs eager (in-process; compilation time reported apart).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workbench import Run, data, open_record

from .common import alternate, row

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"n_docs": 400, "n_val_docs": 40}


def _cli_wall_time(steps: int, batch_size: int, *extra: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.nc"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "workbench.cli", "train", "--preset", "gpt2-1m", "--data", "stories",
                        "--data-options", json.dumps(OPTIONS), "--steps", str(steps), "--batch-size", str(batch_size),
                        "--quiet", "--set", "eval_every=0", "--out", str(out), *extra],
                       check=True, capture_output=True, env=env, cwd=tmp, timeout=1200)
        record = open_record(out)
        return float(record.wall_time.values[-1] - record.wall_time.values[0])  # steps 2..n: the first is warm-up


def run(quick: bool = False) -> list[dict]:
    steps, batch_size = (10, 16) if quick else (40, 32)
    rows = []
    one = _cli_wall_time(steps, batch_size)
    two = _cli_wall_time(steps, batch_size, "--nproc-per-node", "2")
    rows.append(row("dist", "2-process DDP (gloo) vs 1 process, same global batch (time in steps)", two / one,
                    "report", True, f"{steps} steps gpt2-1m batch {batch_size}: 1 proc {one:.2f} s, 2 procs {two:.2f} s"))

    ds = data.load("stories", **OPTIONS)
    runs = {k: Run("gpt2-1m", ds, batch_size=batch_size, eval_every=0, grad_accum_steps=k).setup() for k in (1, 4)}
    times = alternate({f"accum {k}": (lambda r=r: r.run(steps // 2, progress=False)) for k, r in runs.items()},
                      repeats=2 if quick else 3)
    ratio = times["accum 4"] / times["accum 1"]
    rows.append(row("dist", "grad_accum_steps=4 vs 1, same global batch", ratio, "report", True,
                    f"{steps // 2} steps batch {batch_size}: {times['accum 4']:.2f} s vs {times['accum 1']:.2f} s"))

    if not quick:
        eager = Run("gpt2-1m", ds, batch_size=batch_size, eval_every=0).setup()
        compiled = Run("gpt2-1m", ds, batch_size=batch_size, eval_every=0, compile=True).setup()
        t0 = time.perf_counter()
        compiled.run(2, progress=False)  # compilation happens here
        compile_s = time.perf_counter() - t0
        times = alternate({"eager": lambda: eager.run(steps // 2, progress=False),
                           "compiled": lambda: compiled.run(steps // 2, progress=False)}, repeats=3)
        speedup = times["eager"] / times["compiled"]
        rows.append(row("dist", "torch.compile speed-up on CPU (after compilation)", speedup, "report", True,
                        f"{steps // 2} steps: eager {times['eager']:.2f} s, compiled {times['compiled']:.2f} s; "
                        f"compiling took {compile_s:.0f} s"))
    return rows


if __name__ == "__main__":
    from .common import table

    print(table(run(quick="--quick" in sys.argv)))
