"""The Records tab in Debian's chromium: follow a run another process is writing, live, to its end; and
seed bands drawn for records that differ only in their seed.

The writer is a real ``workbench train`` process writing into the dashboard's shared results folder; the
dashboard serves a researcher's experiment file (two tabs: the experiment and Records), so it is ready in
seconds. Skips without chromium/Playwright, except under ``CI=true``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serving import browser_or_skip, free_port, served

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-gpu"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", WORKBENCH_TORCH_THREADS="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
           TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
EXPERIMENT = """
from workbench import Run, data


def experiment():
    return Run("gpt2-1m", data.load("stories", n_docs=40, n_val_docs=8), batch_size=4, eval_every=0, label="mine")
"""

# Points per data column of the page, its text, the legend labels and how many shaded areas have points.
READ = """() => {
  const lengths = {}; const text = []; const legends = []; let patches = 0;
  for (const doc of (window.Bokeh?.documents ?? [])) {
    for (const m of doc.all_models) {
      const data = m.data;
      if (data && typeof data === "object" && !Array.isArray(data)) {
        for (const [k, v] of Object.entries(data)) {
          if (v && typeof v.length === "number") lengths[k] = (lengths[k] ?? 0) + v.length;
        }
      }
      if (typeof m.text === "string") {
        const once = new DOMParser().parseFromString(m.text, "text/html").documentElement.textContent;
        text.push(new DOMParser().parseFromString(once, "text/html").documentElement.textContent);
      }
      if (m.label && typeof m.label === "object" && typeof m.label.value === "string") legends.push(m.label.value);
      if (m.glyph && (m.glyph.type ?? m.glyph.constructor.__name__) === "Patch") {
        const source = m.data_source?.data ?? {};
        if ((source.x?.length ?? 0) > 2) patches += 1;
      }
    }
  }
  return {lengths, text: text.join("\\n"), legends, patches};
}"""


def _seeded_records(results: Path) -> None:
    """Three real tiny runs that differ only in their seed, saved where the dashboard shares records."""
    from workbench import Run, data

    stories = data.load("stories", n_docs=40, n_val_docs=8)
    for seed in (0, 1, 2):
        run = Run("gpt2-1m", stories, batch_size=4, eval_every=0, seed=seed, label=f"seed {seed}")
        run.run(4, progress=False)
        run.save_record(results / f"seed{seed}.nc")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_records_tab_follows_a_cli_run_live_and_draws_seed_bands(tmp_path):
    exe = browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    results = tmp_path / "results"
    results.mkdir()
    _seeded_records(results)
    exp = tmp_path / "experiment.py"
    exp.write_text(EXPERIMENT)
    writer = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "train", "--preset", "gpt2-1m", "--data", "stories", "--data-options",
         '{"n_docs": 40, "n_val_docs": 8}', "--steps", "100000", "--batch-size", "4", "--quiet", "--set",
         "eval_every=0", "--publish-every", "0.2", "--out", str(results / "live.nc")],
        cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = free_port()
    cmd = [sys.executable, "-m", "widgets.serve", str(exp), "--port", str(port), "--results-dir", str(results),
           "--max-running", "1"]
    try:
        with served(cmd, f"http://127.0.0.1:{port}/", tmp_path / "server.log", cwd=ROOT, env=ENV, timeout=180,
                    name="the dashboard server"), sync_playwright() as p:
            deadline = time.time() + 300
            while not (results / "live.nc.live").exists():
                assert writer.poll() is None and time.time() < deadline, writer.stderr.read()[-2000:]
                time.sleep(0.5)
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/")
            state = lambda: page.evaluate(READ)
            wait = lambda cond, t=120: page.wait_for_function(
                f"() => {{ const s = ({READ})(); return {cond}; }}", timeout=t * 1000)
            button = lambda name: page.get_by_role("button", name=name, exact=True)
            select = page.locator(".bk-input-group", has_text="Saved records").locator("select")

            page.locator(".bk-tab", has_text="Records").first.click()
            button("Refresh lists").click()
            expect(select.locator("option", has_text="shared/live.nc (live)")).to_have_count(1, timeout=60_000)
            # --- follow the run being written: points arrive while it trains
            select.select_option("shared/live.nc (live)")
            button("Follow (live)").click()
            page.get_by_text("Following shared/live.nc (live)").wait_for(timeout=60_000)
            wait("(s.lengths['loss'] ?? 0) >= 3")
            first = state()["lengths"]["loss"]
            wait(f"(s.lengths['loss'] ?? 0) > {first}")  # … and keep arriving: it is live
            assert "running" in state()["text"]
            # --- the writer ends (SIGTERM: stops at a step boundary and saves): the view says so
            writer.send_signal(signal.SIGTERM)
            assert writer.wait(timeout=120) == 143, writer.stderr.read()[-2000:]
            wait("s.text.includes('stopped at step')", t=60)
            assert "writer died" not in state()["text"]
            # --- seed bands: open the three seeded records
            button("Refresh lists").click()
            for seed in (0, 1, 2):
                select.select_option(f"shared/seed{seed}.nc")
                button("Open (compare)").click()
                page.get_by_text(f"Opened shared/seed{seed}.nc").wait_for(timeout=60_000)
            wait("s.legends.some(l => l.includes('mean of 3 seeds')) && s.patches >= 1")
            assert not errors, errors
            page_text = state()["text"]
            assert "Traceback" not in page_text and str(ROOT) not in page_text and str(tmp_path) not in page_text
            browser.close()
    finally:
        if writer.poll() is None:
            writer.kill()
