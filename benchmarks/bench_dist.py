"""Beyond one device (#13), on this CPU: two-process DDP vs one process, gradient accumulation, torch.compile.

* DDP: ``workbench train --nproc-per-node 2`` (two gloo processes, one thread each) vs one process
  (one thread), same global batch; the time compared is the record's ``wall_time`` (seconds inside
  training steps), so process start-up and data loading are not counted. On 2 cores shared with other
  work this shows the communication overhead more than any speed-up.
* Gradient accumulation: ``grad_accum_steps=4`` vs 1 on the same global batch (in-process, alternating).
* ``torch.compile``: steps after compilation vs eager (in-process; compilation time reported apart).
* FSDP vs DDP vs one process: a wider gpt2 (d_model 512, 4 blocks, ~13 M parameters, so the model state is
  not lost in the interpreter's own memory) trained for the same steps on the same global batch, each rank one
  thread (``python -m benchmarks.bench_dist --worker STRATEGY``, under ``torchrun`` for ddp/fsdp): steps/s, each
  rank's peak resident memory (max RSS) and its model state — parameters, gradients and AdamW moments it holds
  (local shards under FSDP) — which FSDP halves over two ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

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


WIDE = dict(n_embd=512, n_layer=4, n_head=8)


def _state_mib(run_) -> float:
    """MiB of parameters, gradients and optimizer state this rank holds (local shards of DTensors)."""
    def local(t):
        return getattr(t, "to_local", lambda: t)()

    tensors = [local(p) for p in run_.model.parameters()]
    tensors += [local(p.grad) for p in run_.model.parameters() if p.grad is not None]
    tensors += [local(v) for st in run_.torch_optimizer.state.values() for v in st.values()
                if isinstance(v, torch.Tensor) and v.ndim > 0]
    return sum(t.numel() * t.element_size() for t in tensors) / 2 ** 20


def worker(strategy: str, steps: int, batch_size: int, out: str) -> None:
    """One rank (or the one process) of the strategy comparison; rank 0 writes its figures to ``out``."""
    import resource

    from workbench import distributed, models

    torch.manual_seed(0)
    ds = data.load("stories", **OPTIONS)
    model = models.build("gpt2-1m", data=ds, **WIDE)
    r = Run(model, ds, batch_size=batch_size, eval_every=0, strategy=strategy, log_every=10 ** 6)
    r.run(1, progress=False)  # warm-up (and FSDP's lazy init)
    t0 = time.perf_counter()
    r.run(steps, progress=False)
    seconds = time.perf_counter() - t0
    figures = {"rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "state_mib": _state_mib(r)}
    per_rank = [figures]
    if strategy != "single":
        per_rank = [None] * distributed.world_size()
        torch.distributed.all_gather_object(per_rank, figures)
    if distributed.is_main():
        Path(out).write_text(json.dumps({"steps_per_sec": steps / seconds, "ranks": per_rank,
                                         "parameters": sum(p.numel() for p in r.model.parameters())}))
    distributed.shutdown()


def _strategy_figures(strategy: str, steps: int, batch_size: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        args = ["-m", "benchmarks.bench_dist", "--worker", strategy, str(steps), str(batch_size), str(out)]
        launcher = [] if strategy == "single" else ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        subprocess.run([sys.executable, *launcher, *args], check=True, capture_output=True, env=env, cwd=ROOT,
                       timeout=1800)
        return json.loads(out.read_text())


def strategies(quick: bool = False) -> list[dict]:
    """FSDP vs DDP vs one process: steps/s and memory per rank (see the module docstring)."""
    steps, batch_size = (4, 8) if quick else (12, 16)
    fig = {s: _strategy_figures(s, steps, batch_size) for s in ("single", "ddp", "fsdp")}

    def ranks(s, key):
        return ", ".join(f"{r[key]:.0f}" for r in fig[s]["ranks"])

    detail = (f"{fig['single']['parameters'] / 1e6:.1f} M params, {steps} steps batch {batch_size}; steps/s: 1 proc "
              f"{fig['single']['steps_per_sec']:.2f}, DDP {fig['ddp']['steps_per_sec']:.2f}, FSDP "
              f"{fig['fsdp']['steps_per_sec']:.2f}")
    memory = (f"model state MiB per rank: 1 proc {ranks('single', 'state_mib')}, DDP {ranks('ddp', 'state_mib')}, "
              f"FSDP {ranks('fsdp', 'state_mib')}; peak RSS MiB per rank: 1 proc {ranks('single', 'rss_mib')}, DDP "
              f"{ranks('ddp', 'rss_mib')}, FSDP {ranks('fsdp', 'rss_mib')}")
    state_ratio = max(r["state_mib"] for r in fig["fsdp"]["ranks"]) / max(r["state_mib"] for r in fig["ddp"]["ranks"])
    return [row("dist", "2-process FSDP vs 2-process DDP, same global batch (time per step)",
                fig["ddp"]["steps_per_sec"] / fig["fsdp"]["steps_per_sec"], "report", True, detail),
            row("dist", "2-process FSDP vs 1 process, same global batch (time per step)",
                fig["single"]["steps_per_sec"] / fig["fsdp"]["steps_per_sec"], "report", True, detail),
            row("dist", "FSDP vs DDP model state per rank (params + grads + AdamW, 2 ranks)", state_ratio, "≈ 0.5",
                0.4 < state_ratio < 0.6, memory)]


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
    rows += strategies(quick)
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        from .common import table

        print(table(run(quick="--quick" in sys.argv)))
