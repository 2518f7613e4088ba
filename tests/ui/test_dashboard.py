"""The served dashboard, for real: every tab in Debian's chromium, a researcher's experiment file,
DNS rebinding refused, sessions that cannot touch each other's files, a closed page that frees its slot.

Servers run as ``python -m widgets.serve`` subprocesses with tiny settings (``--set``) so every tab is
ready in seconds; the pre-trained base and the unlearning target/oracle are cached in the default cache
after the first run. Browser tests skip without chromium/Playwright, except under ``CI=true``.
Headless parts (slots, files, experiment errors) need no browser.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import sys
import time
from pathlib import Path

import pytest

from serving import browser_or_skip, free_port, served  # tests/ui is on sys.path (rootdir-relative test modules)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-gpu"]
TINY = ["--n-docs", "60", "--set", "pretrain_steps=30", "--set", "facts_steps=20", "--set", "facts_entities=10",
        "--set", "finetune_docs=40", "--set", "init_hidden=16", "--set", "init_steps=20", "--set", "probe_every=10",
        "--set", "batch_size=4", "--set", "unlearn_steps=200"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", WORKBENCH_TORCH_THREADS="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
           TOKENIZERS_PARALLELISM="false", PYTHONPATH="/tmp/dbg:" + str(ROOT))

# Points per data column over every Bokeh data source of the page, and its plain text.
READ = """() => {
  const lengths = {}; const text = [];
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
    }
  }
  return {lengths, text: text.join("\\n")};
}"""


def _serve(tmp: Path, *extra: str, port: int | None = None):
    port = port or free_port()
    cmd = [sys.executable, "-m", "widgets.serve", *extra, "--port", str(port), "--results-dir", str(tmp / "results"),
           *TINY]
    return port, served(cmd, f"http://127.0.0.1:{port}/", tmp / "server.log", cwd=ROOT, env=ENV, timeout=120,
                        name="the dashboard server")


@pytest.fixture(scope="module")
def labs(tmp_path_factory):
    """The labs dashboard on a free port: yields (url, results folder, log path)."""
    tmp = tmp_path_factory.mktemp("labs")
    port, ctx = _serve(tmp, "--max-running", "3")
    with ctx:
        yield f"http://127.0.0.1:{port}/", tmp / "results", tmp / "server.log"


@pytest.fixture(scope="module")
def browser():
    exe = browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """One browser session on the dashboard, recording console errors."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))  # names what was fetched
        self.page.goto(url)

    def state(self) -> dict:
        return self.page.evaluate(READ)

    def wait(self, js_condition: str, timeout: float = 240):
        """Wait until ``js_condition`` (an expression of ``s``, the page state) holds."""
        self.page.wait_for_function(f"() => {{ const s = ({READ})(); return {js_condition}; }}", timeout=timeout * 1000)

    def button(self, name: str):
        return self.page.get_by_role("button", name=name, exact=True)

    def tab(self, title: str) -> None:
        self.page.locator(".bk-tab", has_text=title).first.click()

    def options(self, title: str) -> list:
        """The options of the select widget titled ``title`` (read from the page's Bokeh models)."""
        return self.page.evaluate("""(title) => {
          for (const doc of (window.Bokeh?.documents ?? []))
            for (const m of doc.all_models) if (m.title === title && Array.isArray(m.options)) return m.options;
          return null;
        }""", title)

    def fill(self, title: str, value: str) -> None:
        """Type ``value`` into the text input titled ``title``."""
        box = self.page.locator(".bk-input-group", has_text=title).locator("input").first
        box.fill(value)
        box.press("Enter")

    def close(self) -> None:
        self.page.close()


def _settled(p: Page, column: str, quiet_s: float = 3.0, timeout_s: float = 60.0) -> int:
    """The number of ``column`` points once none arrived for ``quiet_s`` (fails if they keep coming for ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    n, since = p.state()["lengths"][column], time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"{column} points kept arriving for {timeout_s:g} s after Stop"
        p.page.wait_for_timeout(500)
        now = p.state()["lengths"][column]
        if now != n:
            n, since = now, time.monotonic()
    return n


def _start_stream_stop(p: Page, column: str = "loss", probes: str | None = None, start: str = "Start") -> dict:
    """Start; wait for ``column`` (and a ``probes`` column) to stream; Stop; check no point arrives after."""
    p.button(start).wait_for(timeout=120_000)
    before = p.state()["lengths"].get(column, 0)
    p.button(start).click()
    p.wait(f"(s.lengths[{column!r}] ?? 0) >= {before + 3}")
    if probes:
        p.wait(f"Object.entries(s.lengths).some(([k, n]) => /{probes}/.test(k) && n > 0)")
    if start == "Start":
        from playwright.sync_api import expect

        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            p.button("Stop").click(timeout=10_000)
        except PlaywrightTimeout:  # tiny settings: the run may reach max_steps while its probe panels fill in
            assert p.button("Start").is_enabled(), "Stop stayed disabled while the run was training"
        expect(p.button("Start")).to_be_enabled(timeout=60_000)
        settled = _settled(p, column)  # the last rows of the stopped loop reach the plot (late on a busy machine) …
        p.page.wait_for_timeout(3000)
        assert p.state()["lengths"][column] == settled, "points still arrive after Stop"  # … and nothing after
    return p.state()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_tab_builds_streams_and_stops_in_chromium(labs, browser, tmp_path):
    url, results, log = labs
    p = Page(browser, url)
    try:
        t0 = time.perf_counter()
        p.button("Start").wait_for(timeout=120_000)  # the Training tab is built on load
        titles = p.page.locator(".bk-tab").all_inner_texts()
        assert titles == ["Training", "Spectra", "Fine-tuning", "Rich/lazy", "Unlearning", "Records"], titles
        _start_stream_stop(p)

        p.tab("Spectra")
        state = _start_stream_stop(p, probes="rank|intruder")
        assert state["lengths"].get("loss", 0) >= 3

        p.tab("Fine-tuning")  # full vs LoRA: the full run first, with its intruder heatmap
        _start_stream_stop(p, probes="intruders")
        p.tab("LoRA r=8")
        _start_stream_stop(p, probes="intruders")

        p.tab("Rich/lazy")  # the init lab trains one point per press (no Stop: a point takes a second)
        p.button("Train").wait_for(timeout=60_000)
        p.button("Train").click()
        p.wait("(s.lengths['kernel_alignment'] ?? 0) >= 1 || (s.lengths['delta_rel_norm'] ?? 0) >= 1", timeout=120)

        p.tab("Unlearning")
        _start_stream_stop(p, probes="forget_prob")
        p.tab("Relearn")  # attack a copy of the unlearned model: a stage of its own, with the same probe
        p.button("Relearn").click()
        p.page.get_by_text("Attack 1").wait_for(timeout=60_000)
        p.button("Start").click()
        p.wait("(s.lengths['loss'] ?? 0) >= 3 && (s.lengths['forget_prob'] ?? 0) >= 3", timeout=120)

        p.page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        assert not p.errors, p.errors
        page_text = p.state()["text"]
        assert "Traceback" not in page_text and str(ROOT) not in page_text
        print(f"all tabs in {time.perf_counter() - t0:.0f} s")
    finally:
        p.close()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_sessions_save_in_separate_folders(labs, browser):
    url, results, _log = labs
    pages = [Page(browser, url), Page(browser, url)]
    try:
        for p in pages:
            p.button("Step").wait_for(timeout=120_000)
            p.button("Step").click()
            p.wait("(s.lengths['loss'] ?? 0) >= 1")
            p.tab("Records")
            p.button("Save record").wait_for()
            p.fill("Save as", "team.nc")
            p.button("Save record").click()
            p.page.get_by_text("Saved the record of Training as team.nc").wait_for(timeout=30_000)
            p.fill("Save as", "../../escape.nc")
            p.button("Save record").click()
            p.page.get_by_text("is outside this session's folder").wait_for(timeout=30_000)
            assert str(results.resolve()) not in p.state()["text"]
        saved = sorted((results / "sessions").glob("*/team.nc"))
        assert len(saved) == 2 and saved[0].parent != saved[1].parent, saved  # same name, two folders
        assert not list(results.rglob("escape.nc")) and not (results.parent / "escape.nc").exists()
        from workbench import open_record

        ids = {open_record(path).attrs.get("run_id") for path in saved}
        assert len(ids) == 2, ids  # B did not overwrite A's record
        for path in saved:
            assert stat.S_IMODE(path.stat().st_mode) & 0o044, oct(path.stat().st_mode)  # not 0600
        # Each session lists (and can open) only its own record.
        for p in pages:
            options = p.options("Saved records")
            assert options == ["team.nc"], options
            p.button("Open (compare)").click()
            p.page.get_by_text("Opened team.nc").wait_for(timeout=30_000)
            assert not p.errors, p.errors
    finally:
        for p in pages:
            p.close()


def _run(coro_fn):
    """Run a coroutine in a thread of its own (Playwright's sync API keeps an event loop in this one)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn())).result()


def _page_and_token(port: int, host: str):
    from tornado import httpclient

    async def fetch():
        r = await httpclient.AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/", headers={"Host": host},
                                                     raise_error=False)
        return r.code, r.body.decode(errors="replace")

    return _run(fetch)


def _websocket(port: int, host: str, origin: str, token: str):
    """Open the Bokeh websocket with these Host/Origin headers: 'open' (got the server's ACK) or the refusal."""
    from tornado import httpclient, websocket

    async def connect():
        request = httpclient.HTTPRequest(f"ws://127.0.0.1:{port}/ws", headers={"Host": host, "Origin": origin})
        try:
            conn = await websocket.websocket_connect(request, subprotocols=["bokeh", token])
        except httpclient.HTTPClientError as exc:
            return f"refused {exc.code}"
        message = await conn.read_message()
        conn.close()
        return "open" if message and "ACK" in message else f"closed: {message!r}"

    return _run(connect)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dns_rebinding_page_and_websocket_are_refused(labs):
    url, _results, log = labs
    port = int(url.rsplit(":", 1)[1].strip("/"))
    good = f"127.0.0.1:{port}"
    code, body = _page_and_token(port, good)
    assert code == 200
    token = re.search(r'"token":\s*"([^"]+)"', body).group(1)
    assert _websocket(port, good, f"http://{good}", token) == "open"
    # The rebinding request: a page on evil.example whose name now points at 127.0.0.1.
    evil = f"evil.example:{port}"
    assert _websocket(port, evil, f"http://{evil}", token) == "refused 403"
    assert _page_and_token(port, evil)[0] == 403  # and no session is built for that Host
    assert _websocket(port, good, f"http://{evil}", token) == "refused 403"  # a foreign Origin (Bokeh's own check)
    assert "Refused a request for Host 'evil.example" in Path(log).read_text()


GOOD = """
from workbench import Run, data

DATA = data.load("stories", n_docs=40, n_val_docs=20)


def experiment():
    return Run("gpt2-1m", DATA, batch_size=4, max_steps=10_000, log_every=1, eval_every=0, label="mine")
"""
BROKEN = {
    "no experiment()": ("def build():\n    return None\n", "defines no function experiment()"),
    "raises": ("def experiment():\n    return helper()\n", "line 2: experiment() raised (NameError: name 'helper'"),
    "syntax": ("def experiment(:\n    pass\n", "line 1 does not parse (SyntaxError"),
    "not a stage": ("def experiment():\n    return open\n", "is not a stage the dashboard can show"),
    "path in message": ("def experiment():\n    open('/definitely/not/here/secret.txt')\n",
                        "No such file or directory ('secret.txt')"),  # the shared error path's words, no server path
}


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_served_experiment_file_works_and_broken_ones_explain(browser, tmp_path):
    exp = tmp_path / "experiment.py"
    exp.write_text(GOOD)
    port, ctx = _serve(tmp_path, str(exp), "--max-running", "1")
    with ctx:
        url = f"http://127.0.0.1:{port}/"
        a = Page(browser, url)
        b = None
        try:
            a.button("Start").wait_for(timeout=120_000)
            assert a.page.locator(".bk-tab").all_inner_texts() == ["experiment", "Records"]
            a.button("Start").click()
            a.wait("(s.lengths['loss'] ?? 0) >= 3")
            assert not a.errors, a.errors
            b = Page(browser, url)  # max_running = 1: B may train only once A's slot is free
            b.button("Start").wait_for(timeout=120_000)
            a.close()  # while A trains: the page is gone, its slot must be free at once
            b.page.wait_for_timeout(1500)  # Bokeh alone frees it only after its 15 s unused-session lifetime
            b.button("Start").click()
            b.wait("(s.lengths['loss'] ?? 0) >= 2 || s.text.includes('already training')", timeout=60)
            assert "already training" not in b.state()["text"], "A's closed page still holds its training slot"
            b.button("Stop").click()
        finally:
            for p in (a, b):
                if p is not None and not p.page.is_closed():
                    p.close()
        for case in ("raises",):  # every case (syntax, missing function, …) is checked headless below
            source, expected = BROKEN[case]
            exp.write_text(source)
            os.utime(exp, ns=(time.time_ns(), time.time_ns()))
            c = Page(browser, url)
            try:
                c.page.get_by_text(expected).wait_for(timeout=60_000)
                text = c.state()["text"]
                assert "experiment.py" in text and "Traceback" not in text, (case, text)
                assert str(tmp_path) not in text and "/definitely" not in text, (case, text)
                assert not c.errors, (case, c.errors)
            finally:
                c.close()
        logged = (tmp_path / "server.log").read_text()
        assert "Traceback" in logged and "NameError" in logged  # the details stay in the log


# ---------------------------------------------------------------------------------------- headless
def test_slots_cap_every_run_in_its_loop(tmp_path):
    from workbench import Run, data
    from widgets.dashboard.slots import RunSlots

    ds = data.load("stories", n_docs=30, n_val_docs=20)
    slots = RunSlots(max_running=1, max_batch_size=8)
    a, b = (Run("gpt2-1m", ds, batch_size=2, max_steps=10_000, log_every=1, eval_every=0) for _ in range(2))
    slots.guard(a)
    slots.guard(b)
    slots.guard(b)  # idempotent
    try:
        a.start()
        while a.global_step < 1:
            time.sleep(0.05)
        with pytest.raises(Exception, match="already training 1 run"):
            b.run(2, progress=False)  # refused before its first step, whatever started it
        assert b.global_step == 0 and b.status == "error" and "max_running=1" in b.message
        a.stop()
        b.run(2, progress=False)  # the slot came back when a's loop ended
        assert b.global_step == 2 and slots.active() == []
        b.batch_size = 16
        with pytest.raises(Exception, match="above this server's limit of 8"):
            b.run(1, progress=False)
    finally:
        a.stop()


def test_session_files_are_private_and_escapes_refused(tmp_path):
    from workbench.errors import ConfigError
    from widgets.dashboard.files import SessionFiles, public_message

    results = tmp_path / "results"
    a, b = SessionFiles(results), SessionFiles(results)
    assert a.folder != b.folder
    for path in (a.resolve("x.nc"), b.resolve("x.nc"), results / "shared.nc"):
        path.write_bytes(b"")
    assert list(a.records()) == ["x.nc", "shared/shared.nc"]  # never b's file
    assert a.opened("x.nc") == a.folder / "x.nc"
    for bad in ("../x.nc", "../" + b.session_id + "/x.nc", str(b.folder / "x.nc"), "/etc/passwd", ""):
        with pytest.raises(ConfigError):
            a.resolve(bad)
    with pytest.raises(ConfigError):
        a.opened(f"../{b.session_id}/x.nc")
    assert public_message(OSError(f"disk full writing {a.folder}/x.nc")) == "OSError: disk full writing x.nc"
    with pytest.raises(ConfigError):
        SessionFiles(results, session_id="../up")


def test_experiment_convention(tmp_path):
    from workbench import Run
    from widgets.dashboard.experiment import Experiment, ExperimentError

    path = tmp_path / "exp.py"
    path.write_text(GOOD.replace("return Run(", "return [Run(").replace('label="mine")', 'label="mine"), '
                                                                          'Run("gpt2-1m", DATA, label="mine")]'))
    stages = Experiment(path).build()
    assert list(stages) == ["mine", "mine (2)"] and all(isinstance(s, Run) for s in stages.values())
    first = Experiment(path)
    assert first.build()["mine"] is not first.build()["mine"]  # a fresh stage per session
    for case, (source, expected) in BROKEN.items():
        path.write_text(source)
        with pytest.raises(ExperimentError) as info:
            Experiment(path).build()
        assert expected.replace("experiment.py", "exp.py") in str(info.value), case
        assert str(tmp_path) not in str(info.value)


def test_app_builds_serve_serves_no_cycle():
    import subprocess

    code = ("import sys, widgets.app; assert 'widgets.serve' not in sys.modules, 'app imports serve'; "
            "import widgets.serve; assert sum(m.endswith('app') and 'widgets' in m for m in sys.modules) == 1")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, check=True, timeout=120)
