"""Browser test: the served dashboard's Training tab in Debian's chromium, driven by Playwright (Python); every tab is in test_dashboard.py.

Serves ``python -m widgets.serve`` on a free port in a subprocess, loads it, clicks Step and Start,
checks through BokehJS (``Bokeh.documents``; Bokeh renders inside shadow DOM) that the loss plot's data
source gained points, clicks Stop, checks the run stopped (status line, and no more points arrive),
and saves a screenshot in the test's tmp dir.

Skips with the reason when chromium or Playwright is missing — except under ``CI=true``, where a
missing browser is a failure. Install the browser with ``make browser`` (``apt-get install chromium``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from serving import browser_or_skip, free_port, served  # tests/ui is on sys.path (rootdir-relative test modules)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-gpu"]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

# Counts of points per plotted column, and the status line, read from the page's Bokeh documents.
READ_STATE = """() => {
  const counts = {}; let status = "";
  for (const doc of (window.Bokeh?.documents ?? [])) {
    for (const m of doc.all_models) {
      const data = m.data;
      if (data && typeof data === "object" && "step" in data) {
        for (const k of ["loss", "lr", "grad_norm", "val_loss"]) {
          if (k in data) counts[k] = (counts[k] ?? 0) + data[k].length;
        }
      }
      if (typeof m.text === "string") {  // Panel's Markdown: escaped HTML; keep its plain text
        const plain = new DOMParser().parseFromString(m.text, "text/html").documentElement.textContent;
        const text = new DOMParser().parseFromString(plain, "text/html").documentElement.textContent;
        if (text.includes("status ")) status = text;
      }
    }
  }
  return {counts, status};
}"""


@pytest.fixture
def dashboard(tmp_path):
    """The dashboard served on a free port; yields its URL, stops the server afterwards."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", WORKBENCH_TORCH_THREADS="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               TOKENIZERS_PARALLELISM="false")
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "widgets.serve", "--port", str(port), "--n-docs", "100", "--max-running", "2",
           "--results-dir", str(tmp_path / "results")]
    with served(cmd, url, tmp_path / "server.log", cwd=ROOT, env=env, timeout=120, name="the dashboard server"):
        yield url


def test_dashboard_step_start_stop_in_chromium(dashboard, tmp_path):
    exe = browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            page.goto(dashboard)
            step = page.get_by_role("button", name="Step", exact=True)
            expect(step).to_be_visible(timeout=90_000)
            state = page.evaluate(READ_STATE)
            assert state["counts"].get("loss") == 0, state  # the loss plot exists and is empty

            step.click()
            page.wait_for_function(f"() => ({READ_STATE})().counts.loss >= 1", timeout=60_000)

            page.get_by_role("button", name="Start", exact=True).click()
            page.wait_for_function(f"() => ({READ_STATE})().counts.loss >= 8", timeout=90_000)
            running = page.evaluate(READ_STATE)
            assert "running" in running["status"], running
            assert running["counts"]["lr"] == running["counts"]["loss"] and running["counts"].get("grad_norm", 0) >= 8

            page.get_by_role("button", name="Stop", exact=True).click()
            page.wait_for_function(f"() => ({READ_STATE})().status.includes('stopped')", timeout=60_000)
            status = page.evaluate(READ_STATE)["status"]
            final_step = int(re.search(r"step (\d+)", status).group(1))
            assert final_step >= 8, status
            # Every step up to the final one reaches the plot (updates may trail the status by one poll) …
            page.wait_for_function(f"() => ({READ_STATE})().counts.loss === {final_step}", timeout=30_000)
            page.wait_for_timeout(2000)
            after = page.evaluate(READ_STATE)
            # … and nothing after it: the run really stopped.
            assert after["counts"]["loss"] == final_step and f"step {final_step} " in after["status"], after
            expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
