"""UI overhead: training steps/s headless vs with the full monitor open in a headless chromium.

One process, two runs of the same config (``gpt2-1m`` on ``stories``, batch 8, no eval probe, the same
probes: ``SpectraProbe`` with singular values, ``WeightChange``, ``EffectiveRank``, every 10 steps): run A
has no view; run B is shown by its ``TrainingMonitor`` (core plots plus every probe's panel), served by
Panel in a background thread and open in one headless-chromium page (Playwright, Debian's chromium), so
the monitor polls B's history every 300 ms and streams the rows to the browser. Both train the same number of steps through ``start()`` +
``wait()`` (a background thread, as the dashboard's Start does), alternating A, B, A, B…; the ratio is the
median wall time of B over A. Goal ≤ 1.10.

    python -m benchmarks.bench_ui           # full: 5 × 150 steps each
    python -m benchmarks.bench_ui --quick   # 3 × 40 steps each

torch runs on one thread here: the machine is small and shared, and oversubscribed OpenMP threads make
timings swing by 10× (see widgets/serve.py); the dashboard itself gives each training cores / max_running.
"""

from __future__ import annotations

import shutil
import socket
import sys

from benchmarks.common import alternate, row, table

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-gpu"]
COUNT_LOSS = """() => { let n = 0; for (const doc of (window.Bokeh?.documents ?? []))
  for (const m of doc.all_models) if (m.data && typeof m.data === "object" && "step" in m.data && "loss" in m.data) n += m.data.loss.length;
  return n; }"""
COUNT_HEATMAPS = """() => { let n = 0; for (const doc of (window.Bokeh?.documents ?? []))
  for (const m of doc.all_models) if (m.type === "HeatMap" || (m.data && typeof m.data === "object" && "matrix" in m.data && "step" in m.data && m.data.matrix.length)) n += 1;
  return n; }"""


def run(quick: bool = False) -> list[dict]:
    import torch

    exe = shutil.which("chromium")
    if exe is None:
        raise RuntimeError("bench_ui needs Debian's chromium (make browser / apt-get install -y chromium).")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored below: run_all runs every benchmark in this process
    try:
        return _measure(quick, exe)
    finally:
        torch.set_num_threads(threads)


def _measure(quick: bool, exe: str) -> list[dict]:
    import panel as pn
    from playwright.sync_api import expect, sync_playwright

    import widgets
    from workbench import Run, data
    from workbench.regime import EffectiveRank, WeightChange
    from workbench.spectra import SpectraProbe

    steps, repeats = (40, 3) if quick else (150, 5)
    ds = data.load("stories", n_docs=200)
    cfg = dict(batch_size=8, max_steps=10**7, log_every=5, eval_every=0)

    def probes():
        return [SpectraProbe(every=10, singular_values=True), WeightChange(every=10), EffectiveRank(every=10)]

    headless = Run("gpt2-1m", ds, label="headless", probes=probes(), **cfg)
    shown = Run("gpt2-1m", ds, label="monitor", probes=probes(), **cfg)
    sessions = []

    def app():
        monitor = widgets.view(shown)
        sessions.append(monitor)
        return monitor

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = pn.serve({"/": app}, address="127.0.0.1", port=port, show=False, threaded=True,
                      websocket_origin=[f"127.0.0.1:{port}"])
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            page.goto(f"http://127.0.0.1:{port}/")
            expect(page.get_by_role("button", name="Step", exact=True)).to_be_visible(timeout=120_000)

            def train(r):
                r.start(steps)
                r.wait()

            times = alternate({"headless": lambda: train(headless), "monitor": lambda: train(shown)},
                              repeats=repeats, warmup=1)
            page.wait_for_timeout(3000)  # let the last poll reach the browser
            points = page.evaluate(COUNT_LOSS)
            heatmaps = page.evaluate(COUNT_HEATMAPS)
            browser.close()
    finally:
        server.stop()
    total = shown.global_step
    ratio = times["monitor"] / times["headless"]
    detail = (f"{steps} steps × {repeats}: headless {steps / times['headless']:.1f} steps/s, full monitor open "
              f"{steps / times['monitor']:.1f} steps/s; browser plot received {points}/{total} loss points, "
              f"{heatmaps} heatmaps drawn")
    return [row("ui", "training steps/s: full monitor (every probe's panel) open in chromium vs headless "
                      "(gpt2-1m, batch 8, 3 probes)", ratio, "≤ 1.10", ratio <= 1.10, detail)]


if __name__ == "__main__":
    print(table(run(quick="--quick" in sys.argv)))
