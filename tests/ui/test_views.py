"""Headless view tests: build the Bokeh models, click buttons programmatically, check what reached the streams.

No browser: ``pn.panel(view).get_root()`` builds the Bokeh document; ``button.clicks += 1`` fires the
same callback a browser click would; ``view.poll()`` is what the periodic callback runs.
"""

from __future__ import annotations

import time

import ipywidgets
import numpy as np
import panel as pn
import pytest
import xarray as xr
from bokeh.models import ColumnDataSource

import widgets
from widgets.app import RunSlots, session_view, DashboardConfig
from widgets.monitor import TrainingMonitor
from widgets.record_view import RecordView
from workbench import Run, data, open_record


@pytest.fixture(scope="module")
def dataset():
    return data.load("stories", n_docs=60, n_val_docs=10)


@pytest.fixture
def run(dataset):
    r = Run("gpt2-1m", dataset, batch_size=4, max_steps=400, log_every=2, eval_every=5, eval_batches=1, label="t")
    yield r
    r.stop(wait=True, timeout=30)


def wait_for(cond, timeout=30.0, view=None):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if view is not None:
            view.poll()
        if cond():
            return True
        time.sleep(0.05)
    return False


def cds_lengths(root, column):
    return [len(s.data[column]) for s in root.select({"type": ColumnDataSource}) if column in s.data]


def test_view_is_registered_and_controls_skip_published_state(run):
    view = widgets.view(run)
    assert isinstance(view, TrainingMonitor)
    root = pn.panel(view).get_root()
    shown = set(view.controls.parameters)
    assert {"lr", "optimizer", "batch_size", "max_steps"} <= shown
    assert not shown & {"status", "running", "loss", "steps_per_sec", "last_logged_step", "message", "name"}
    assert cds_lengths(root, "loss") == [0]
    # The controls edit the run's declared params (two-way), without code evaluation.
    view.controls._widgets["lr"].value = 0.005
    assert run.lr == 0.005
    view.stop_polling()


def test_step_button_streams_rows_into_buffers_and_bokeh(run):
    view = widgets.view(run)
    root = pn.panel(view).get_root()
    view.step_button.clicks += 1
    view.step_button.clicks += 1
    assert run.global_step == 2
    assert list(view.buffers["loss"].data["step"]) == [1, 2]
    assert len(view.buffers["lr"].data) == 2 and len(view.buffers["grad_norm"].data) == 2
    assert list(view.buffers["val_loss"].data["step"]) == [0]  # eval probe measured before the first step
    assert cds_lengths(root, "loss") == [2]  # the Buffer streamed into the Bokeh ColumnDataSource
    assert "**step** 2" in view.status.object and "**loss**" in view.status.object
    assert view.poll() == 0  # cursor: nothing is sent twice
    view.stop_polling()


def test_start_streams_while_training_and_stop_stops(run):
    view = widgets.view(run)
    root = pn.panel(view).get_root()
    view.start_button.clicks += 1
    assert view.is_training and not view.stop_button.disabled and view.start_button.disabled
    assert wait_for(lambda: len(view.buffers["loss"].data) >= 5, view=view)
    assert run.running
    view.stop_button.clicks += 1
    assert wait_for(lambda: not view.is_training, view=view)
    view.poll()
    assert run.status == "stopped" and not run.running
    steps = view.buffers["loss"].data["step"].tolist()
    assert steps == list(range(1, run.global_step + 1))  # every row arrived once, in order
    assert cds_lengths(root, "loss") == [run.global_step]
    assert view.start_button.disabled is False and view.stop_button.disabled is True
    assert "stopped" in view.status.object
    view.stop_polling()


def test_run_n_trains_exactly_n_more_steps_in_background(run):
    view = widgets.view(run)
    view.n_input.value = 3
    view.run_n_button.clicks += 1
    assert wait_for(lambda: not view.is_training, view=view)
    assert run.global_step == 3 and run.status == "finished"
    view.n_input.value = 0
    view.run_n_button.clicks += 1
    assert view.alert.visible and "N must be" in view.alert.object
    view.stop_polling()


def test_save_checkpoint_and_sandboxed_paths(run, tmp_path):
    view = TrainingMonitor(run, save_root=str(tmp_path))
    view.step_button.clicks += 1
    view.checkpoint_path.value = "ckpts/a.pt"
    view.save_button.clicks += 1
    assert (tmp_path / "ckpts" / "a.pt").exists()
    assert view.info.visible and "step 1" in view.info.object
    view.checkpoint_path.value = "../escape.pt"
    view.save_button.clicks += 1
    assert view.alert.visible and "outside the folder" in view.alert.object
    assert not (tmp_path.parent / "escape.pt").exists()
    resumed = Run.resume(tmp_path / "ckpts" / "a.pt", model="gpt2-1m", data=run.data)
    assert resumed.global_step == 1
    view.stop_polling()


def test_errors_are_messages_not_exceptions(run):
    view = widgets.view(run)
    run.max_steps = 1
    view.step_button.clicks += 1
    view.start_button.clicks += 1  # already at max_steps
    assert view.alert.visible and "max_steps" in view.alert.object

    def broken(cursor=0):
        raise RuntimeError("history unavailable")

    run.history.rows_since = broken  # a failing poll must not kill the periodic callback
    assert view.poll() == 0
    assert view.alert.visible and "history unavailable" in view.alert.object
    view.stop_polling()


def test_each_view_has_its_own_cursor_and_late_joiners_get_history(run):
    first = widgets.view(run)
    run.run(4, progress=False)
    first.poll()
    late = widgets.view(run)
    late.poll()
    assert len(first.buffers["loss"].data) == len(late.buffers["loss"].data) == 4
    run.step()
    first.poll()
    assert len(first.buffers["loss"].data) == 5 and len(late.buffers["loss"].data) == 4
    first.stop_polling(), late.stop_polling()


def test_buffers_are_bounded(run):
    view = TrainingMonitor(run, buffer_length=10)
    run.run(15, progress=False)
    view.poll()
    assert len(view.buffers["loss"].data) == 10
    assert view.buffers["loss"].data["step"].iloc[-1] == 15
    view.stop_polling()


def test_run_slots_cap_concurrent_trainings(dataset):
    slots = RunSlots(max_running=1)
    runs = [Run("gpt2-1m", dataset, batch_size=4, max_steps=400, log_every=2, eval_every=0) for _ in range(2)]
    views = [TrainingMonitor(r, starter=slots.start) for r in runs]
    try:
        views[0].start_button.clicks += 1
        assert runs[0].running
        views[1].start_button.clicks += 1  # refused by the slot callback before its first step
        assert wait_for(lambda: not runs[1].running and views[1].alert.visible, view=views[1])
        assert "max_running=1" in views[1].alert.object and runs[1].global_step == 0
        views[1].step_button.clicks += 1  # stepping is still allowed
        assert runs[1].global_step == 1
        views[0].stop_button.clicks += 1
        assert wait_for(lambda: not views[0].is_training, view=views[0])
        views[1].start_button.clicks += 1  # the slot is free again
        assert runs[1].running
    finally:
        for r, v in zip(runs, views):
            r.stop()
            v.stop_polling()


def test_dashboard_session_view_restricts_controls(run, tmp_path):
    config = DashboardConfig(results_dir=str(tmp_path))
    layout = session_view(run, config, RunSlots(2))
    layout.get_root()
    monitor = layout.monitor
    assert "device" not in monitor.controls.parameters and "lr" in monitor.controls.parameters
    assert monitor.controls._widgets["batch_size"].end == 64
    monitor.step_button.clicks += 1
    assert len(monitor.buffers["loss"].data) == 1
    monitor.stop_polling()


def test_display_and_ipywidget(run):
    bundle = run._repr_mimebundle_()
    data_, _meta = bundle if isinstance(bundle, tuple) else (bundle, {})
    assert "application/vnd.holoviews_exec.v0+json" in data_
    widget = widgets.ipywidget(run)
    assert isinstance(widget, ipywidgets.DOMWidget)


def _record(run, lr, path):
    run.lr = lr
    run.run(6, progress=False)
    ds = run.record
    ds["norm"] = xr.DataArray(np.arange(ds.sizes["step"] * 2, dtype=float).reshape(-1, 2), dims=("step", "matrix"),
                              coords={"matrix": ["h.0.attn", "h.0.mlp"]})
    run.save_record(path)
    return ds


def test_record_view_plots_compares_and_heatmaps(dataset, tmp_path):
    runs = [Run("gpt2-1m", dataset, batch_size=4, log_every=2, eval_every=3, eval_batches=1, label=f"r{i}") for i in range(2)]
    ds0 = _record(runs[0], 1e-3, tmp_path / "a.nc")
    ds0.to_netcdf(tmp_path / "with_norm.nc", engine="h5netcdf")
    _record(runs[1], 3e-3, tmp_path / "b.nc")
    view = widgets.view(open_record(tmp_path / "with_norm.nc"))
    assert isinstance(view, RecordView)
    view.open(str(tmp_path / "b.nc"))
    assert list(view.records) == ["r0", "r1"]
    assert view.variable == "loss" and {"lr", "grad_norm", "val_loss", "norm"} <= set(view.param.variable.objects)
    pn.panel(view).get_root()
    fig = view.figure()  # both records as curves on the same axes
    assert len(fig) == 2 and fig.get(0).data["loss"].tolist() == ds0.loss.dropna("step").values.tolist()
    view.variable = "val_loss"  # eval loss is sparse over step: NaN steps are dropped
    assert len(view.figure().get(0).data) == 3
    view.variable = "norm"  # per-matrix: a matrix × step heatmap
    layout = view.figure()
    assert type(layout.values()[0]).__name__ == "HeatMap" and view.row_select.visible
    view.path_input.value = str(tmp_path / "missing.nc")
    view.open_button.clicks += 1
    assert view.alert.visible and "No record" in view.alert.object


def test_record_view_root_refuses_outside_paths(tmp_path):
    view = RecordView(root=str(tmp_path / "inside"))
    view.path_input.value = "../outside.nc"
    view.open_button.clicks += 1
    assert view.alert.visible and "outside the folder" in view.alert.object
