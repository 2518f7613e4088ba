"""UI overhead: training steps/s headless vs with the dashboard open in a headless chromium.

One process, two runs of the same config (``gpt2-1m`` on ``stories``, batch 8, no eval probe): run A has
no view; run B is shown by the dashboard's session view, served by Panel in a background thread and open
in one headless-chromium page (Playwright, Debian's chromium), so its monitor polls B's history every
300 ms and streams the rows to the browser. Both train the same number of steps through ``start()`` +
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
import tempfile

from benchmarks.common import alternate, row, table

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-gpu"]
COUNT_LOSS = """() => { let n = 0; for (const doc of (window.Bokeh?.documents ?? []))
  for (const m of doc.all_models) if (m.data && typeof m.data === "object" && "step" in m.data && "loss" in m.data) n += m.data.loss.length;
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

    from widgets.app import DashboardConfig, RunSlots, session_view
    from workbench import Run, data

    steps, repeats = (40, 3) if quick else (150, 5)
    ds = data.load("stories", n_docs=200)
    cfg = dict(batch_size=8, max_steps=10**7, log_every=5, eval_every=0)
    headless = Run("gpt2-1m", ds, label="headless", **cfg)
    shown = Run("gpt2-1m", ds, label="dashboard", **cfg)
    config = DashboardConfig(results_dir=tempfile.mkdtemp(prefix="bench_ui_"))
    sessions = []

    def app():
        layout = session_view(shown, config, RunSlots(2))
        sessions.append(layout)
        return layout

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

            times = alternate({"headless": lambda: train(headless), "dashboard": lambda: train(shown)},
                              repeats=repeats, warmup=1)
            page.wait_for_timeout(1500)  # let the last poll reach the browser
            points = page.evaluate(COUNT_LOSS)
            browser.close()
    finally:
        server.stop()
    total = shown.global_step
    ratio = times["dashboard"] / times["headless"]
    detail = (f"{steps} steps × {repeats}: headless {steps / times['headless']:.1f} steps/s, dashboard open "
              f"{steps / times['dashboard']:.1f} steps/s; browser plot received {points}/{total} loss points")
    return [row("ui", "training steps/s: dashboard open in chromium vs headless (gpt2-1m, batch 8)", ratio, "≤ 1.10",
                ratio <= 1.10, detail)]


if __name__ == "__main__":
    print(table(run(quick="--quick" in sys.argv)))
