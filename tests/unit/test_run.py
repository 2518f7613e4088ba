"""The Run stage: stepping, loops, background threads, callbacks, records, divergence."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import workbench as wb
from workbench import Run
from workbench.errors import ConfigError, DivergedError


def test_step_run_and_record(tiny_run):
    run = tiny_run(eval_every=3)
    row = run.step()
    assert run.global_step == 1 and math.isfinite(row["loss"]) and run.loss == row["loss"]
    run.run(5, progress=False)
    assert run.global_step == 6 and run.status == "finished" and not run.running
    rec = run.record
    assert list(rec.step.values) == [0, 1, 2, 3, 4, 5, 6]  # step 0 = the eval before training
    assert np.isfinite(rec.loss.sel(step=slice(1, 6))).all()
    assert np.isfinite(rec.val_loss.sel(step=[0, 3, 6])).all()  # the eval probe, every 3 steps
    meta = wb.meta(rec)
    assert meta["config"]["batch_size"] == 4 and meta["model"]["preset"] == "gpt2-1m"
    assert meta["data"]["name"] == "stories" and meta["status"] == "finished"


def test_training_lowers_loss(tiny_run):
    run = tiny_run(lr=3e-3, batch_size=8)
    run.run(30, progress=False)
    losses = run.record.loss.values
    assert losses[-5:].mean() < losses[:5].mean() - 0.5


def test_start_stop_background(tiny_run):
    run = tiny_run(max_steps=10_000)
    run.start()
    deadline = time.time() + 60
    while run.global_step < 3 and time.time() < deadline:
        time.sleep(0.05)
    run.stop()
    assert run.status == "stopped" and not run.running
    stopped_at = run.global_step
    assert 3 <= stopped_at < 10_000
    time.sleep(0.3)
    assert run.global_step == stopped_at  # nothing runs after stop()
    with pytest.raises(ConfigError):
        run.start(); run.start()  # a second start while running is refused
    run.stop()


def test_step_while_running_is_refused(tiny_run):
    run = tiny_run(max_steps=10_000)
    run.start()
    try:
        with pytest.raises(ConfigError, match="background"):
            run.step()
    finally:
        run.stop()


def test_callbacks_fire_in_order_and_show_loop(tiny_run, capsys):
    run = tiny_run()
    seen = []
    for event in ("before_run", "before_step", "after_loss", "after_backward", "after_step", "after_run"):
        run.add_callback(event, lambda r, _e=event, **kw: seen.append(_e), name=f"rec_{event}")
    run.run(1, progress=False)
    assert seen == ["before_run", "before_step", "after_loss", "after_backward", "after_step", "after_run"]
    text = run.show_loop()
    assert "rec_after_step" in text and "after_cancel" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="Unknown event"):
        run.add_callback("after_everything", print)


def test_schedule_and_live_lr_edit(tiny_run):
    run = tiny_run(schedule="cosine", warmup_steps=2, max_steps=10, lr=1e-2)
    run.run(4, progress=False)
    lrs = run.record.lr.values
    assert lrs[0] == pytest.approx(5e-3) and lrs[1] == pytest.approx(1e-2) and lrs[3] < lrs[2]
    run.lr = 1e-4  # edited between steps: applies at the next step
    run.step()
    assert run.history.latest("lr") < 1e-4


def test_divergence_with_poisoned_weights_says_they_are_not_finite(tiny_run):
    run = tiny_run()
    run.run(2, progress=False)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    with torch.no_grad():
        run.model.transformer.wte.weight[0, 0] = float("nan")  # poison: the next loss is nan
    poisoned = {k: v.clone() for k, v in run.model.state_dict().items()}
    with pytest.raises(DivergedError, match=r"weights themselves are not finite \(NaN/inf in transformer.wte") as err:
        run.run(3, progress=False)
    assert "last finite" not in str(err.value)
    assert run.status == "diverged" and run.global_step == 2
    for k, v in run.model.state_dict().items():  # no optimizer step happened
        assert torch.equal(v, poisoned[k]) or torch.allclose(v, poisoned[k], equal_nan=True)
    assert wb.meta(run.record)["status"] == "diverged"
    with pytest.raises(DivergedError):
        run.step()


def test_runs_do_not_share_rng(stories):
    a = Run("gpt2-1m", stories, batch_size=4, eval_every=0, seed=3)
    a.run(3, progress=False)
    b = Run("gpt2-1m", stories, batch_size=4, eval_every=0, seed=3)
    torch.rand(10)  # unrelated global RNG use between runs
    b.run(3, progress=False)
    assert np.array_equal(a.record.loss.values, b.record.loss.values)


def test_import_loads_no_ui_library():
    code = ("import sys, workbench, workbench.run, workbench.models, workbench.data; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'panel', 'holoviews', 'bokeh', 'ipywidgets', 'hvplot'}); "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
