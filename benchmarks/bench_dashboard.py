"""Time to first paint of each dashboard tab, in Debian's chromium (Playwright).

Serves ``python -m widgets.serve`` in a subprocess and opens it in two browser sessions, one after the
other. In each, every tab is opened in turn and timed from the click (from ``goto`` for Training, the tab
shown on load) until its stage's control (Start, or Train for the init lab) and a plot canvas are
visible. The first session pays for what a server process builds once (tokenized data, the pre-trained
base and unlearning models — trained on the first ever run on a machine, then loaded from the disk
cache); the second shows what every later visitor waits. The row's ratio is the second session's time in
seconds; the goal is a tab usable within 10 s of opening on a warm server.

    python -m benchmarks.bench_dashboard           # the dashboard's default sizes
    python -m benchmarks.bench_dashboard --quick   # the browser tests' tiny sizes
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.common import row, table

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-gpu"]
TINY = ["--n-docs", "60", "--set", "pretrain_steps=30", "--set", "facts_steps=20", "--set", "facts_entities=10",
        "--set", "finetune_docs=40", "--set", "init_hidden=16", "--set", "init_steps=20"]
CONTROL = {"Rich/lazy": "Train"}
GOAL_S = 10.0


def _paint(page, control: str, timeout_s: float = 600) -> bool:
    """Wait for the tab's control and a plot; False if the tab showed an error instead."""
    button = page.get_by_role("button", name=control, exact=True).first
    error = page.locator(".alert-danger").filter(visible=True).first
    button.or_(error).wait_for(timeout=timeout_s * 1000)
    if not button.is_visible():
        return False
    page.locator("canvas").first.wait_for(timeout=timeout_s * 1000)
    return True


def _session(browser, url: str) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    times = {}
    try:
        t0 = time.perf_counter()
        page.goto(url)
        times["Training"] = time.perf_counter() - t0 if _paint(page, "Start") else float("nan")
        for title in page.locator(".bk-tab").all_inner_texts()[1:]:
            if title == "Records":
                continue
            t0 = time.perf_counter()
            page.locator(".bk-tab", has_text=title).first.click()
            painted = _paint(page, CONTROL.get(title, "Start"))
            times[title] = time.perf_counter() - t0 if painted else float("nan")
    finally:
        page.close()
    return times


def run(quick: bool = False) -> list[dict]:
    exe = shutil.which("chromium")
    if exe is None:
        raise RuntimeError("bench_dashboard needs Debian's chromium (make browser / apt-get install -y chromium).")
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="bench_dashboard_"))
    env = dict(os.environ, OMP_NUM_THREADS="1", WORKBENCH_TORCH_THREADS="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "widgets.serve", "--port", str(port), "--results-dir", str(tmp / "results"),
           *(TINY if quick else [])]
    url = f"http://127.0.0.1:{port}/"
    with open(tmp / "server.log", "w") as log:
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            t_start = time.perf_counter()
            while True:
                try:
                    urllib.request.urlopen(url, timeout=60).read()
                    break
                except OSError:
                    if server.poll() is not None or time.perf_counter() - t_start > 180:
                        raise RuntimeError(f"the dashboard did not start: {(tmp / 'server.log').read_text()[-1500:]}")
                    time.sleep(0.5)
            ready = time.perf_counter() - t_start
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
                try:
                    first = _session(browser, url)
                    second = _session(browser, url)
                finally:
                    browser.close()
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
    size = "tiny sizes" if quick else "default sizes"
    rows = []
    for title, seconds in second.items():
        rows.append(row("dashboard", f"first paint of the {title} tab (s, {size})", seconds, f"≤ {GOAL_S:g} s",
                        seconds <= GOAL_S, "showed an error instead" if seconds != seconds else f"first session {first[title]:.1f} s, later session {seconds:.1f} s"
                                           f"; server ready in {ready:.1f} s"))
    return rows


if __name__ == "__main__":
    print(table(run(quick="--quick" in sys.argv)))
