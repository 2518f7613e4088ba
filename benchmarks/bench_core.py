"""The Run's overhead: workbench ``Run.run(n)`` vs a bare PyTorch loop on the same model, data and seed.

Both fetch the same batches (``Split.batch_at``), use AdamW, clip gradients and read the loss each
step (``.item()``), so the difference is the Run's machinery: history rows, callbacks, RNG forking,
schedule, publishing. No probes attached. Alternating repeats in one process.
"""

from __future__ import annotations

import statistics
import time

import torch

from workbench import Run, data, models

from .common import alternate, row, table


def _bare(model, split, steps, batch_size, seed, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for i in range(steps):
        batch = split.batch_at(i, batch_size, seed)
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        out.loss.item()


def run(quick: bool = False) -> list[dict]:
    steps, repeats = (20, 2) if quick else (100, 5)
    ds = data.load("stories", n_docs=1000)
    batch_size, seed, lr = 16, 0, 1e-3
    loop_times = {"workbench": [], "bare": []}

    # Model construction (and the Run's one-off setup: device, W0 snapshot) stays outside the timed loop.
    def workbench_run():
        r = Run(models.build("gpt2-1m", data=ds), ds, batch_size=batch_size, seed=seed, lr=lr, eval_every=0,
                max_steps=steps, log_every=10).setup()
        t0 = time.perf_counter()
        r.run(steps, progress=False)
        loop_times["workbench"].append(time.perf_counter() - t0)

    def bare_loop():
        model = models.build("gpt2-1m", data=ds)
        t0 = time.perf_counter()
        _bare(model, ds.train, steps, batch_size, seed, lr)
        loop_times["bare"].append(time.perf_counter() - t0)

    alternate({"workbench": workbench_run, "bare": bare_loop}, repeats=repeats)
    times = {k: statistics.median(v[1:]) for k, v in loop_times.items()}  # the first (warm-up) round dropped
    ratio = times["workbench"] / times["bare"]
    detail = (f"{steps} steps gpt2-1m, batch {batch_size}×64: workbench {times['workbench']:.2f} s, "
              f"bare {times['bare']:.2f} s (median of {repeats})")
    return [row("core", "Run.run vs bare PyTorch loop (wall time)", ratio, "≤ 1.03", ratio <= 1.03, detail)]


if __name__ == "__main__":
    import sys

    print(table(run(quick="--quick" in sys.argv)))
