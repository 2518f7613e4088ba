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


# ---------------------------------------------------------------- "is it training?" is `running`, exactly
def test_running_stays_true_until_the_thread_has_finished_everything(tiny_run):
    run = tiny_run()
    during_after_run, finished_callback = [], []

    def slow_after_run(r, **_):
        during_after_run.append(r.running)
        time.sleep(0.5)  # work at the very end of the loop (saving, logging…)
        finished_callback.append(True)

    run.add_callback("after_run", slow_after_run)
    seen = []
    run.param.watch(lambda e: seen.append(e.new), "running")
    run.start(2)
    while run.running:
        time.sleep(0.005)
    assert finished_callback == [True]  # running went False only after the loop's last callback returned
    assert during_after_run == [True] and seen == [True, False] and run.status == "finished"
    run.wait()  # returns at once; nothing left to raise


def test_wait_reraises_a_background_error_and_running_ends(tiny_run):
    run = tiny_run()

    def boom(r, **_):
        raise RuntimeError("probe exploded")

    run.add_callback("after_step", boom)
    run.start(3)
    with pytest.raises(RuntimeError, match="probe exploded"):
        run.wait()
    assert not run.running and run.status == "error" and "probe exploded" in run.message


# ---------------------------------------------------------------- settings the loop cannot change mid-run
def test_locked_parameters_refuse_changes_while_training(tiny_run):
    run = tiny_run(max_steps=10_000)
    assert {"optimizer", "weight_decay", "momentum", "batch_size", "seed", "device", "autocast"} <= set(
        Run.LOCKED_WHILE_TRAINING)
    run.start()
    try:
        while run.global_step < 1:
            time.sleep(0.01)
        with pytest.raises(ConfigError, match="stop\\(\\) first"):
            run.optimizer = "sgd"
        with pytest.raises(ConfigError, match="weight_decay cannot change while"):
            run.param.update(weight_decay=0.1)  # the widgets' path
        run.lr = 5e-4  # live settings still apply
        run.batch_size = run.batch_size  # setting the same value is no change
    finally:
        run.stop()
    assert run.optimizer == "adamw" and run.weight_decay == 0.0 and run.config()["optimizer"] == "adamw"
    assert isinstance(run.torch_optimizer, torch.optim.AdamW)
    run.optimizer = "sgd"  # stopped: allowed, and the next step uses it
    run.step()
    assert isinstance(run.torch_optimizer, torch.optim.SGD) and wb.meta(run.record)["config"]["optimizer"] == "sgd"


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_lr_is_refused(stories, value):
    with pytest.raises(ConfigError, match="finite"):
        Run("gpt2-1m", stories, lr=value)


def test_non_finite_value_set_later_is_refused(tiny_run):
    run = tiny_run()
    with pytest.raises(ConfigError, match="lr must be a finite number"):
        run.lr = math.nan
    assert run.lr == 1e-3


def test_block_size_longer_than_the_model_is_refused_at_construction():
    from workbench import data

    long = data.load("stories", n_docs=20, n_val_docs=4, block_size=256)
    with pytest.raises(ConfigError, match="256 tokens long .* only 128 positions.*block_size ≤ 128"):
        Run("gpt2-1m", long)


def test_real_divergence_keeps_the_last_finite_weights(tiny_run):
    run = tiny_run(lr=1e4, grad_clip=0.0, optimizer="sgd", momentum=0.0)
    with pytest.raises(DivergedError) as err:
        run.run(20, progress=False)
    finite = all(torch.isfinite(p).all() for p in run.model.parameters())
    assert ("last finite values" in str(err.value)) == bool(finite)


# ---------------------------------------------------------------- events with an order; probes by name
def test_callbacks_run_by_order_and_probes_run_last(tiny_run):
    run = tiny_run()
    calls = []

    class Mark(wb.Probe):
        def measure(self, r):
            calls.append("probe")
            return {}

    run.add_probe(Mark(every=1, at_start=False))
    run.add_callback("after_step", lambda r, **_: calls.append("late"), name="late", order=5)
    run.add_callback("after_step", lambda r, **_: calls.append("mask"), name="mask")  # attached last, order 0
    run.step()
    assert calls == ["mask", "late", "probe"]
    text = run.show_loop()
    assert "mask [0], late [5], Mark(every=1) [100]" in text


def test_add_probe_by_registry_name(tiny_run):
    from workbench import probes
    from workbench.errors import NotFoundError

    run = tiny_run()
    probe = run.add_probe("weight_change", every=2)
    assert type(probe).__name__ == "WeightChange" and probe.every == 2 and probe in run.probes
    run.run(2, progress=False)
    assert "distance_from_init" in run.record
    with pytest.raises(NotFoundError, match="Unknown probe 'spectrs'.*'spectra'"):
        probes.create("spectrs")
    with pytest.raises(ConfigError, match="Its parameters are"):
        probes.create("weight_change", evry=3)


def test_history_rows_carry_wall_time(tiny_run):
    run = tiny_run()
    run.run(3, progress=False)
    wall = run.record.wall_time.sel(step=[1, 2, 3]).values
    assert (wall > 0).all() and (np.diff(wall) > 0).all()


def test_ctrl_c_in_a_blocking_run_leaves_a_stopped_run_that_continues(tiny_run):
    run = tiny_run()

    def interrupt(r, **_):
        if r.global_step == 2:
            raise KeyboardInterrupt

    run.add_callback("after_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run.run(5, progress=False)
    assert run.status == "stopped" and not run.running and "Interrupted" in run.message
    run.callbacks.remove(interrupt)
    run.run(1, progress=False)
    assert run.global_step == 3 and run.status == "finished"
