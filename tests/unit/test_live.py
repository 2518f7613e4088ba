"""Live records (#13): a run publishes its history while it trains; another process follows it.

The writer is a real second process running the ``workbench train`` CLI on ``gpt2-1m``; the follower is
this test process reading ``open_record(out, follow=True)``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from workbench import open_record
from workbench.errors import ConfigError, MissingPathError
from workbench.history import History
from workbench.live import LiveRecord, Publisher, journal_path

ROOT = Path(__file__).resolve().parents[2]


def _cli(out: Path, steps: int, *extra) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "workbench.cli", "train", "--preset", "gpt2-1m", "--data", "stories",
           "--data-options", '{"n_docs": 60, "n_val_docs": 8}', "--steps", str(steps), "--batch-size", "4",
           "--quiet", "--set", "eval_every=0", "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out.parent)


def _wait_for(predicate, proc, timeout=300.0, what=""):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None and not predicate():
            raise AssertionError(f"the writer exited ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_cli_run_is_followed_live_from_another_process_and_ends_equal_to_its_record(tmp_path):
    out = tmp_path / "run.nc"
    proc = _cli(out, 200, "--publish-every", "0.01", "--probe", "weight_change:25")
    try:
        live = open_record(out, follow=True, wait=300)
        assert isinstance(live, LiveRecord) and live.status == "running"
        partial = []
        deadline = time.monotonic() + 600
        while live.running and time.monotonic() < deadline:
            live.update()
            if live.running and 0 < live.global_step < 200:
                partial.append(live.global_step)
            time.sleep(0.05)
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(set(partial)) >= 2, f"the follower never saw the run in progress: {partial}"  # it was live
    assert live.status == "finished" and live.global_step == 200
    final = open_record(out)
    followed = live.record
    assert not journal_path(out).exists()  # the saved record replaced the journal
    assert sorted(followed.data_vars) == sorted(final.data_vars)
    assert "relative_weight_change" in followed.data_vars or "delta_rel_norm" in followed.data_vars  # an array
    for name in final.data_vars:
        xr.testing.assert_equal(followed[name].reset_coords(drop=True), final[name].reset_coords(drop=True))
    for key in ("run_id", "stage", "config", "model", "data", "seed"):
        assert followed.attrs[key] == final.attrs[key], key


@pytest.mark.slow
def test_a_writer_killed_mid_run_is_reported_died_and_its_record_stays_readable(tmp_path):
    out = tmp_path / "run.nc"
    proc = _cli(out, 100000, "--publish-every", "0.01")
    try:
        live = open_record(out, follow=True, wait=300)
        _wait_for(lambda: live.update() >= 0 and live.global_step >= 3, proc, what="three published steps")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    live.update()
    assert live.status == "died" and not live.running
    assert f"pid {proc.pid}" in live.message and "gone" in live.message
    assert not out.exists()  # the record was never saved …
    crashed = open_record(out)  # … but what was published opens as a record
    assert crashed.attrs["status"] == "died" and crashed.sizes["step"] >= 3
    assert np.isfinite(crashed.loss.values).all()


def test_each_publish_is_seen_whole_or_not_at_all(tmp_path):
    path = tmp_path / "run.nc"
    h = History()
    pub = Publisher(path, h, attrs={"run_id": "r1"}, every=0)
    live = LiveRecord(path)
    h.log(1, loss=3.0)
    pub.publish()
    assert live.update() == 1 and live.record.loss.values.tolist() == [3.0]
    # a publish caught half-written (or cut by a crash): the reader waits for the rest of the line
    line = json.dumps({"status": "running", "step": 2, "rows": [{"step": 2, "loss": 2.5}], "arrays": {}}) + "\n"
    with open(journal_path(path), "ab") as f:
        f.write(line[:20].encode())
    assert live.update() == 0 and live.record.sizes["step"] == 1
    with open(journal_path(path), "ab") as f:
        f.write(line[20:].encode())
    assert live.update() == 1 and live.record.loss.values.tolist() == [3.0, 2.5]


def test_arrays_and_values_round_trip_exactly(tmp_path):
    path = tmp_path / "run.nc"
    h = History()
    pub = Publisher(path, h, every=0)
    rng = np.random.default_rng(0)
    for step in (1, 2):
        h.log(step, loss=float(rng.normal()), lr=1e-3 / 3, flag=True)
        h.log_array(step, "sv", xr.DataArray(rng.normal(size=(2, 3)).astype("float32"), dims=("matrix", "index"),
                                             coords={"matrix": ["a.w", "b.w"], "index": [0, 1, 2]}))
    h.log(2, val_loss=float("nan"))
    pub.end("finished", step=2)
    live = LiveRecord(path)
    xr.testing.assert_identical(live.history.to_dataset(), h.to_dataset())
    assert live.history.to_dataset().sv.dtype == np.float32


def test_a_new_run_replaces_the_journal_and_followers_start_over(tmp_path):
    path = tmp_path / "run.nc"
    h = History()
    Publisher(path, h, every=0)
    h.log(1, loss=1.0), h.log(2, loss=1.0)
    live = LiveRecord(path)
    h2 = History()
    pub2 = Publisher(path, h2, every=0)
    h2.log(1, loss=9.0)
    pub2.publish()
    live.update()
    assert live.record.loss.values.tolist() == [9.0]


def test_following_nothing_says_how_to_start(tmp_path):
    with pytest.raises(MissingPathError, match="--out"):
        open_record(tmp_path / "nothing.nc", follow=True)
    with pytest.raises(ConfigError, match="every"):
        Publisher(tmp_path / "run.nc", History(), every=-1)


def test_an_in_process_run_publishes_and_its_saved_record_retires_the_journal(tiny_run, tmp_path):
    run = tiny_run(max_steps=6)
    path = tmp_path / "run.nc"
    run.publish(path, every=0)
    live = open_record(path, follow=True)
    run.run(3, progress=False)
    live.update()
    assert live.status == "finished" and live.global_step == 3
    run.run(3, progress=False)  # a second run() keeps publishing into the same journal
    live.update()
    assert live.global_step == 6 and live.record.sizes["step"] == 6
    run.save_record(path)
    assert not journal_path(path).exists()
    assert live.update() == 0 and live.status == "finished"
    xr.testing.assert_equal(live.record.loss, open_record(path).loss)


def test_a_writer_that_exits_without_an_end_is_reported_died(tmp_path):
    path = tmp_path / "run.nc"
    script = ("import os, sys; from workbench.history import History; from workbench.live import Publisher\n"
              "h = History(); p = Publisher(sys.argv[1], h, every=0)\n"
              "h.log(1, loss=2.0); p.publish(); os._exit(9)  # no end line, no record: a crash\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, timeout=300, check=False)
    assert proc.returncode == 9, proc.stderr[-2000:]
    live = open_record(path, follow=True)
    assert live.status == "died" and not live.running and live.global_step == 1
    assert "is gone" in live.message and "step 1" in live.message
    assert open_record(path).loss.values.tolist() == [2.0]  # what was published is a readable record


@pytest.mark.slow
def test_a_two_process_ddp_run_is_followed_and_equals_its_record(tmp_path):
    out = tmp_path / "run.nc"
    proc = _cli(out, 40, "--publish-every", "0.01", "--nproc-per-node", "2", "--batch-size", "8")
    try:
        live = open_record(out, follow=True, wait=600)
        live.wait(timeout=600, interval=0.1)
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert live.status == "finished" and live.global_step == 40
    live.update()
    final = open_record(out)
    for name in final.data_vars:
        xr.testing.assert_equal(live.record[name].reset_coords(drop=True), final[name].reset_coords(drop=True))
    assert live.record.attrs["config"] == final.attrs["config"] and '"strategy": "ddp"' in final.attrs["config"]


def test_a_publish_that_cannot_be_written_says_why_and_keeps_what_was_published(tmp_path):
    path = tmp_path / "run.nc"
    script = ("import json, resource, signal, sys\n"
              "from workbench.errors import SaveError; from workbench.history import History; from workbench.live import Publisher\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "h = History(); p = Publisher(sys.argv[1], h, every=0)\n"
              "h.log(1, loss=2.0); p.publish()\n"
              "size = len(open(sys.argv[1] + '.live', 'rb').read())\n"
              "hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, hard))  # the soft limit: it can be lifted again\n"
              "h.log(2, loss=1.0, note='x' * 200)\n"
              "try:\n    p.publish()\nexcept SaveError as exc:\n    print(json.dumps({'errno': exc.errno, 'message': str(exc)}))\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))\n"
              "h.log(3, loss=0.5); p.publish()  # room again: the next publish is whole (no partial line before it)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    error = json.loads(proc.stdout.strip().splitlines()[-1])
    assert error["errno"] == 27 and "file-size limit" in error["message"] and "run.nc.live" in error["message"]
    live = LiveRecord(path)  # what was published before is intact, and so is what came after
    assert live.record.loss.values.tolist() == [2.0, 0.5]
