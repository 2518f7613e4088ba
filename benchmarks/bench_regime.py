"""Rich/lazy lab benchmarks: a sweep on a 2-worker Dask LocalCluster vs serial; probe costs vs a step.

Run: ``python -m benchmarks.bench_regime`` (``--quick`` for a short version).

* **sweep speed-up** — the same 8-configuration rich/lazy sweep (full vs low-rank init × 4 seeds), run
  serially in this process and on a ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``
  started (and warmed: torch imported on each worker) before timing; alternating repeats. Both use one
  torch thread per trial. Goal ≥ 1.7× on 2 cores.
* **probe cost** — one KernelAlignment measurement (tangent kernel w.r.t. W_rec on a 32-trial probe
  batch, torch.func) and one Sharpness measurement (20 HVP power iterations + 10 Hutchinson samples)
  relative to one SGD training step of the same RNN.
"""

from __future__ import annotations

import sys

import torch

from benchmarks.common import alternate, row, table


def _warm(_):
    import workbench.regime  # noqa: F401  (import torch and the workbench on the worker)

    return 0


def sweep_speedup(quick: bool) -> dict:
    from distributed import Client

    from workbench.regime import sweep
    from workbench.regime.sweep import local_cluster

    grid = {"init": ["full", "low_rank"], "seed": [0, 1, 2, 3]}
    # Sized like the rich_lazy notebook (N = 100, 300 steps) so each trial is real work next to Dask's per-task cost.
    fixed = dict(n_hidden=32 if quick else 100, rank=1, steps=40 if quick else 300, n_train=128, n_probe=16, batch_size=32,
                 threads=1)
    threads = torch.get_num_threads()
    with local_cluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster) as client:
        client.gather(client.map(_warm, range(4), pure=False))
        results = {}

        def serial():
            results["serial"] = sweep(grid, fixed=fixed, backend="serial", progress=False)

        def dask():
            results["dask"] = sweep(grid, fixed=fixed, client=client, progress=False)

        times = alternate({"serial": serial, "dask": dask}, repeats=1 if quick else 2, warmup=0)
    torch.set_num_threads(threads)
    ratio = times["serial"] / times["dask"]
    failed = int(results["serial"].attrs["n_failed"]) + int(results["dask"].attrs["n_failed"])
    return row("regime", "8-config sweep: serial / Dask LocalCluster(2 workers)", ratio, "≥ 1.7", ratio >= 1.7 and not failed,
               f"serial {times['serial']:.1f} s, dask {times['dask']:.1f} s, {fixed['steps']} steps/config, failed {failed}")


def probe_costs(quick: bool) -> list[dict]:
    from workbench import Run, data, models
    from workbench.regime import KernelAlignment, Sharpness

    ds = data.load("two_afc", n_train=256, n_val=32)
    model = models.rnn(d_in=3, n_hidden=64, d_out=2)
    kernel = KernelAlignment(params=["weight_rec"], output="last", n_examples=32, every=10**9, at_start=False)
    sharp = Sharpness(params=["weight_rec"], iters=20, tol=0.0, samples=10, n_examples=32, every=10**9, at_start=False)
    run = Run(model, ds, probes=[kernel, sharp], optimizer="sgd", lr=0.003, batch_size=32, eval_every=0, device="cpu",
              max_steps=10**6)
    run.step()
    times = alternate({"step": run.step, "kernel": lambda: kernel.measure(run), "sharpness": lambda: sharp.measure(run)},
                      repeats=3 if quick else 7, warmup=1)
    detail = f"step {times['step'] * 1e3:.0f} ms (RNN N=64, T=20, batch 32)"
    return [row("regime", "kernel-alignment probe / training step", times["kernel"] / times["step"], "report", True,
                f"probe {times['kernel'] * 1e3:.0f} ms; {detail}"),
            row("regime", "sharpness probe (20 power its + 10 Hutchinson) / step", times["sharpness"] / times["step"],
                "report", True, f"probe {times['sharpness'] * 1e3:.0f} ms; {detail}")]


def run(quick: bool = False) -> list[dict]:
    return [sweep_speedup(quick), *probe_costs(quick)]


if __name__ == "__main__":
    print(table(run(quick="--quick" in sys.argv)))
