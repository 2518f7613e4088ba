"""Start a local server for a browser test and stop it afterwards (shared by the dashboard and JupyterLab tests)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest


@contextlib.contextmanager
def served(cmd: list[str], probe_url: str, log_path, cwd, env: dict, timeout: float, name: str, stop_wait: float = 15):
    """Run a server (``cmd``) until ``probe_url`` answers; yield; then terminate it (kill if it lingers).

    Fails the test with the server's log tail if it exits early or does not answer within ``timeout`` s.
    """
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}: {open(log_path).read()[-2000:]}")
            try:
                urllib.request.urlopen(probe_url, timeout=min(60, timeout)).read()
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"{name} did not answer within {timeout:g} s")
                time.sleep(0.5)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(stop_wait)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_or_skip() -> str:
    exe = shutil.which("chromium")
    reason = None
    if exe is None:
        reason = "Debian's chromium is not installed (run `make browser` or `apt-get install -y chromium`)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright Python package is not installed (pip install playwright)"
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: browser tests must run, but {reason}.")
        pytest.skip(reason)
    return exe
