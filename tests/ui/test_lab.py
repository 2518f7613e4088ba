"""JupyterLab test: open the tour notebook in JupyterLab (Debian's chromium via Playwright), run all cells
with ``interactive=True``, see the training monitor render and stream, press its Stop button.

The page is offline (no CDN can be reached), as in an air-gapped lab: BokehJS and Panel's JS must come
from the kernel's output (``widgets.monitor.publish_bokehjs``). The notebook gets its parameters from
papermill's ``prepare_only`` (no execution), so what runs is the real tour with a parameters cell
injected. The kernel trains with one torch thread (``OMP_NUM_THREADS=1``).

Skips without chromium/Playwright, fails then under ``CI=true`` (like test_browser.py). ~30-70 s on
the shared 2-core machine. The browser console is printed on the way out, a screenshot left in tmp.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from serving import served  # tests/ui is on sys.path (rootdir-relative test modules)

from serving import browser_or_skip, free_port
from test_browser import CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]


# Like test_browser.READ_STATE, but only in the Bokeh document that holds the monitor's status line: the
# tour also displays a record view (a second document with its own loss plot).
MONITOR_STATE = """() => {
  for (const doc of (window.Bokeh?.documents ?? [])) {
    const counts = {}; let status = "";
    for (const m of doc.all_models) {
      const data = m.data;
      if (data && typeof data === "object" && "step" in data) {
        for (const k of ["loss", "lr", "grad_norm"]) {
          if (k in data) counts[k] = (counts[k] ?? 0) + data[k].length;
        }
      }
      if (typeof m.text === "string") {  // Panel's Markdown: escaped HTML; keep its plain text
        const plain = new DOMParser().parseFromString(m.text, "text/html").documentElement.textContent;
        const text = new DOMParser().parseFromString(plain, "text/html").documentElement.textContent;
        if (text.includes("status ")) status = text;
      }
    }
    if (status) return {counts, status};
  }
  return {counts: {}, status: ""};
}"""


@pytest.fixture
def chromium() -> str:
    return browser_or_skip()  # before starting JupyterLab: skip (or fail under CI=true) without a browser


@pytest.fixture
def lab(tmp_path, chromium):
    import papermill as pm

    nb = tmp_path / "tour.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "00_tour.ipynb"), str(nb), prepare_only=True, kernel_name="workbench",
                        parameters=dict(interactive=True, steps=400, n_docs=60, batch_size=4,
                                        results_path=str(tmp_path / "tour.nc")))
    port, token = free_port(), "workbench-test"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--allow-root",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
           "--ServerApp.disable_check_xsrf=True"]
    with served(cmd, f"{base}/api/status?token={token}", tmp_path / "lab.log", cwd=tmp_path, env=env, timeout=90,
                name="jupyter lab", stop_wait=20):
        yield f"{base}/lab/tree/tour.ipynb?token={token}"


def test_tour_notebook_shows_the_monitor_in_jupyterlab(lab, chromium, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            msgs = []
            page.on("console", lambda m: msgs.append(f"{m.type}: {m.text[:300]}"))
            page.on("pageerror", lambda e: msgs.append(f"pageerror: {str(e)[:300]}"))
            page.on("requestfailed", lambda r: msgs.append(f"requestfailed: {r.url[:200]}"))
            page.goto(lab)
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=90_000)
            expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=90_000)  # kernel started
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            stop = page.get_by_role("button", name="Stop", exact=True)
            expect(stop).to_be_enabled(timeout=120_000)  # the monitor rendered and the run is training
            page.wait_for_function(f"() => ({MONITOR_STATE})().counts.loss >= 3", timeout=90_000)  # plots stream
            stop.click()
            page.wait_for_function(f"() => ({MONITOR_STATE})().status.includes('stopped')", timeout=60_000)
            status = page.evaluate(MONITOR_STATE)["status"]
            assert re.search(r"step \d+", status), status
            # Everything came from the kernel, not a CDN: no loader gave up, no request (script, stylesheet) failed.
            assert not [m for m in msgs if "failed to load within specified timeout" in m
                        or "Bokeh or Panel library is missing" in m], msgs
            assert not [m for m in msgs if m.startswith("requestfailed:")], msgs
        finally:
            print("browser console:\n" + "\n".join(m for m in msgs if any(w in m.lower() for w in ("error", "fail", "bokeh"))))
            page.screenshot(path=str(tmp_path / "lab.png"), full_page=False)  # also on failure: what Lab showed
            browser.close()


# Rows drawn by the plots of every Bokeh document on the page, per history column.
DRAWN = """(names) => {
  const counts = {};
  for (const doc of (window.Bokeh?.documents ?? [])) {
    for (const m of doc.all_models) {
      const data = m.data;
      if (!data || typeof data !== "object") continue;
      for (const k of names) if (k in data) counts[k] = Math.max(counts[k] ?? 0, data[k].length);
    }
  }
  return counts;
}"""

PROBE_CELLS = [
    "import torch; torch.set_num_threads(1)\n"
    "from workbench import Run, data\n"
    "from workbench.spectra import SpectraProbe\n"
    "from workbench.regime import WeightChange\n"
    "run = Run('gpt2-1m', data.load('stories', n_docs=60, n_val_docs=10), batch_size=4, max_steps=400, log_every=2,\n"
    "          eval_every=0)\n"
    "run.add_probe(SpectraProbe(every=5, spectra=False))  # intruders only: light on a small shared machine\n"
    "run.add_probe(WeightChange(every=5))\n"
    "run",
    "run.start()",
]


@pytest.fixture
def probe_lab(tmp_path, chromium):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in PROBE_CELLS])
    nb.metadata["kernelspec"] = {"name": "workbench", "display_name": "workbench", "language": "python"}
    nbformat.write(nb, tmp_path / "probes.ipynb")
    port, token = free_port(), "workbench-test"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--allow-root",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
           "--ServerApp.disable_check_xsrf=True"]
    with served(cmd, f"{base}/api/status?token={token}", tmp_path / "lab.log", cwd=tmp_path, env=env, timeout=90,
                name="jupyter lab", stop_wait=20):
        yield f"{base}/lab/tree/probes.ipynb?token={token}"


@pytest.mark.timeout(600)
@pytest.mark.xfail(reason="open bug (views, Nov 29): in JupyterLab some plot updates of a long monitor never reach the "
                          "page's Bokeh models (plots that join later stay empty, others freeze; the kernel holds every "
                          "point, no error anywhere; windowingMode=none did not fix it). Served pages and headless "
                          "tests stream them", strict=False)
def test_run_with_probes_streams_every_probe_panel_without_warnings(probe_lab, chromium, tmp_path):
    """A Run with SpectraProbe and WeightChange, displayed and started: its monitor streams a loss curve, a
    weight-change curve and an intruder heatmap; no cell output holds a warning, the console no error, and
    ``run.start()`` at the end of a cell shows no second monitor."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        msgs = []
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: msgs.append(f"{m.type}: {m.text[:300]}"))
            page.on("pageerror", lambda e: msgs.append(f"pageerror: {str(e)[:300]}"))
            page.goto(probe_lab)
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=90_000)
            expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=90_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            names = ["loss", "distance_from_init", "delta_rel_norm", "intruders"]
            page.wait_for_function(f"() => {{ const c = ({DRAWN})({names}); return c.loss >= 4 && "
                                   f"c.distance_from_init >= 2 && c.intruders >= 2 && c.delta_rel_norm >= 2; }}",
                                   timeout=180_000, polling=1000)  # 3 min: the loss streams within ~1 min
            counts = page.evaluate(f"({DRAWN})({names})")
            page.get_by_role("button", name="Stop", exact=True).click()
            page.wait_for_timeout(2000)  # a few more polls after the run stopped
            outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
            stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
            assert not stderr, stderr  # no warning (or any text on stderr) in a cell's output
            assert not [o for o in outputs if "warning" in o.lower()], outputs
            errors = [m for m in msgs if m.startswith(("error", "pageerror"))]
            assert not errors, errors  # e.g. "reference ... isn't known"
            assert page.get_by_role("button", name="Start", exact=True).count() == 1, "run.start() showed a second monitor"
            assert counts["intruders"] >= 2 and counts["delta_rel_norm"] >= 2, counts
        finally:
            print("browser console:\n" + "\n".join(m for m in msgs if any(w in m.lower() for w in ("error", "warn", "fail"))))
            page.screenshot(path=str(tmp_path / "probes.png"), full_page=True)
            browser.close()
