"""Faults: kill -9 during every kind of save, a size-limited disk, Ctrl-C/SIGTERM of a CLI run.

The saves run in a subprocess (``_fault_child.py``) so kills and resource limits stay contained. Each
kind — record ``.nc``, record ``.zarr``, model folder, checkpoint-style ``torch.save`` — must: always
load its previous (or a newer, complete) version after a kill -9 at a random moment; raise a clear
``SaveError`` naming the problem and the target under ``RLIMIT_FSIZE``, with the process alive and the
previous version intact; and leave no temporary files behind after the next save.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("_fault_child.py")
KINDS = ("nc", "zarr", "model", "checkpoint")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _child(*args, timeout=600) -> dict:
    out = subprocess.run([sys.executable, str(CHILD), *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_kill_9_during_each_kind_of_save_keeps_the_previous_file(tmp_path):
    result = _child("kill", tmp_path, 12, 1234)
    for kind in KINDS:
        r = result[kind]
        assert r["ok"], (kind, r)
        assert r["litter"] == [], f"{kind}: temporaries left after the next save: {r['litter']}"
        assert max(r["versions"]) > 0, f"{kind}: no save ever completed; the kills tested nothing"


@pytest.mark.slow
def test_size_limited_write_gives_clear_error_and_keeps_previous(tmp_path):
    result = _child("limit", tmp_path)
    for kind in KINDS:
        r = result[kind]
        assert r["ok"], (kind, r)                       # a SaveError, and the process went on
        assert r["errno"] == 27 and "file-size limit" in r["message"]
        target = {"nc": "r.nc", "zarr": "r.zarr", "model": "model", "checkpoint": "c.pt"}[kind]
        assert re.search(rf"'[^']*{re.escape(target)}'", r["message"]), r["message"]  # names the target
        assert ".tmp" not in r["message"]
        assert r["version"] == 1, f"{kind}: the previous version was not intact"
        assert r["litter"] == [], f"{kind}: temporaries left: {r['litter']}"


def _watch(stream, seen: list[str]):
    for chunk in iter(lambda: stream.read(1), ""):
        seen.append(chunk)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_a_cli_run_and_saves_record_and_checkpoint(tmp_path, signum, code):
    from workbench.checkpoint import read_checkpoint
    from workbench.record import meta, open_record

    out, ckpt = tmp_path / "r.nc", tmp_path / "c.pt"
    cmd = [sys.executable, "-m", "workbench.cli", "train", "--steps", "100000", "--batch-size", "2",
           "--data-options", '{"n_docs": 30, "n_val_docs": 4}', "--set", "eval_every=0", "--log-every", "1",
           "--out", str(out), "--checkpoint", str(ckpt)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    seen: list[str] = []
    watcher = threading.Thread(target=_watch, args=(proc.stderr, seen), daemon=True)
    watcher.start()
    deadline = time.time() + 300
    while not re.search(r"\b[1-9]\d*/100000", "".join(seen)):  # tqdm shows at least one finished step
        assert proc.poll() is None and time.time() < deadline, "".join(seen)[-2000:]
        time.sleep(0.2)
    proc.send_signal(signum)
    proc.wait(timeout=300)
    watcher.join(timeout=60)  # every byte of stderr read (the process has exited: EOF ends the watcher)
    err = "".join(seen)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    assert f"stopped by {signal.Signals(signum).name}" in err and "saved checkpoint" in err and "record" in err
    record = open_record(out)
    state = read_checkpoint(ckpt)
    assert meta(record)["status"] == "stopped" and int(record.attrs["global_step"]) >= 1
    assert state["run"]["step"] == int(record.attrs["global_step"])
    assert sorted(os.listdir(tmp_path)) == ["c.pt", "r.nc"]


def test_an_interrupted_sweep_keeps_its_finished_configurations(tmp_path):
    from workbench.record import open_record
    from workbench.regime import sweep

    calls = []

    def trial(config):
        calls.append(config["x"])
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the third configuration
        return {"y": config["x"] * 2.0}

    with pytest.raises(KeyboardInterrupt):
        sweep({"x": [1, 2, 3, 4]}, trial, backend="serial", progress=False, out=tmp_path / "s.nc", save_every_s=1e9)
    ds = open_record(tmp_path / "s.nc")
    assert ds.status.values.tolist() == ["ok", "ok", "pending", "pending"]
    assert ds.y.values[:2].tolist() == [2.0, 4.0]
    full = sweep({"x": [1, 2]}, lambda c: {"y": 1.0}, backend="serial", progress=False, out=tmp_path / "s.nc")
    assert open_record(tmp_path / "s.nc").status.values.tolist() == full.status.values.tolist() == ["ok", "ok"]
