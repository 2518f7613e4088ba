"""Headless tests of the probe views by shape and of the monitor that composes them.

Each test checks what the *plot draws*: the Bokeh ``ColumnDataSource``s of the rendered document (built
with ``pn.panel(view).get_root()``), or the stream a ``DynamicMap`` is built from — never side state.
"""

from __future__ import annotations

import numpy as np
import panel as pn
import pytest
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure as figure_type

import widgets
from widgets.heatmap import MatrixHeatmap, SpectrumSnapshot
from widgets.probe_view import ProbeView, unit_of
from widgets.series import TimeSeries, debiased_ema
from workbench import Run, data
from workbench.matrices import weight_matrices
from workbench.regime import Sharpness, WeightChange
from workbench.spectra import SpectraProbe


@pytest.fixture(scope="module")
def stories():
    return data.load("stories", n_docs=60, n_val_docs=10)


@pytest.fixture
def make_run(stories):
    runs = []

    def make(**kw):
        params = dict(batch_size=4, max_steps=200, eval_every=0, log_every=1)
        params.update(kw)
        run = Run("gpt2-1m", stories, **params)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.stop(wait=True, timeout=60)


def drawn(root, column: str) -> list[np.ndarray]:
    """The values of ``column`` in every data source of the rendered document (what the browser draws)."""
    return [np.asarray(s.data[column]) for s in root.select({"type": ColumnDataSource}) if column in s.data]


def test_scalar_matrix_and_spectrum_shapes_stream_into_the_monitor(make_run):
    run = make_run()
    run.add_probe(WeightChange(every=2))
    monitor = widgets.view(run)
    root = pn.panel(monitor).get_root()
    run.add_probe(SpectraProbe(every=2, singular_values=True))  # attached after the monitor is on screen
    run.run(4, progress=False)
    monitor.poll()
    assert not monitor.alert.visible, monitor.alert.object
    n = len(weight_matrices(run.model))
    # scalars: a time series per unit group, the points reach the plot
    dist = monitor.part("distance_from_init")
    assert isinstance(dist, TimeSeries)
    assert [list(v) for v in drawn(root, "distance_from_init")][0][:1] == [0.0]
    assert sorted(dist.buffers["distance_from_init"].data.step) == [0, 2, 4]
    rel = monitor.part("relative_distance_from_init")
    assert isinstance(rel, TimeSeries) and unit_of("relative_distance_from_init") == "relative"
    # step × matrix: a heatmap (all matrices × measured steps) and one matrix's curve
    heat = monitor.part("delta_rel_norm")
    assert isinstance(heat, MatrixHeatmap)
    sizes = sorted(len(v) for v in drawn(root, "delta_rel_norm"))
    assert sizes[-1] == 3 * n and 3 in sizes, sizes  # the heatmap (3 steps × n matrices), the picked matrix's curve
    assert set(heat.curve_frame().step) == {0, 2, 4}
    heat.matrix = heat.param.matrix.objects[-1]
    assert heat.curve_pipe.data.equals(heat.curve_frame())
    intr = monitor.part("intruders")
    assert isinstance(intr, MatrixHeatmap) and intr.frame("intruders").query("step == 0").intruders.sum() == 0
    # step × matrix × index: a spectrum snapshot (chosen step, first step overlaid) with a step slider
    snap = monitor.part("singular_values")
    assert isinstance(snap, SpectrumSnapshot)
    curves = snap.pipe.data
    assert set(curves.which) == {"first measured step (W0 at step 0)", "chosen step"}
    assert snap.steps == [0, 2, 4] and snap.position == 2
    w0 = curves[curves.which.str.startswith("first")].singular_values.to_numpy()
    now = curves[curves.which == "chosen step"].singular_values.to_numpy()
    assert len(w0) == len(now) > 0 and not np.allclose(w0, now)  # training moved the spectrum
    snap.slider.value = 0  # back to step 0: both curves are W0's
    step0 = snap.pipe.data
    assert np.allclose(step0[step0.which == "chosen step"].singular_values, w0) and not snap.follow
    monitor.stop_polling()


def test_displaying_a_probe_shows_its_view(make_run):
    run = make_run()
    probe = run.add_probe(WeightChange(every=2))
    view = widgets.view(probe, run=run)
    assert isinstance(view, ProbeView)
    root = pn.panel(view).get_root()
    run.run(2, progress=False)
    view.poll()
    assert sorted(view.part("distance_from_init").buffers["distance_from_init"].data.step) == [0, 2]
    assert drawn(root, "delta_rel_norm")  # the heatmap joined the page when its first data came
    assert view.part("loss") is None  # the run's own columns are the monitor's, not the probe's
    view.stop_polling()


def test_sharpness_plot_has_the_edge_of_stability_line(make_run):
    run = make_run(lr=0.01)
    run.add_probe(Sharpness(every=2, iters=2, samples=0, n_examples=4))
    monitor = widgets.view(run)
    pn.panel(monitor).get_root()
    run.run(2, progress=False)
    monitor.poll()
    assert not monitor.alert.visible, monitor.alert.object
    ts = monitor.part("sharpness")
    line = ts.buffers["2/lr (edge of stability)"].data
    lr = run.history.column("lr")[1]
    assert len(line) == 2 and np.allclose(line["2/lr (edge of stability)"], 2.0 / lr)
    monitor.stop_polling()


def test_time_series_smoothing_log_and_constant_range(make_run):
    run = make_run(warmup_steps=0, lr=1e-3)
    monitor = widgets.view(run)
    root = pn.panel(monitor).get_root()
    run.run(6, progress=False)
    monitor.poll()
    lr = monitor.series["lr"]
    assert np.allclose(lr.buffers["lr"].data.lr, 1e-3)  # a constant schedule
    # the y axis shows the constant value with room around it (not a degenerate −1…1 range around 0)
    ranges = [(f.y_range.start, f.y_range.end) for f in root.select({"type": figure_type})
              if any(r.glyph is not None and "lr" in getattr(r.data_source, "data", {}) for r in f.renderers)]
    assert ranges and all(lo < 1e-3 < hi and hi - lo < 1e-3 for lo, hi in ranges), ranges
    # smoothing: the smoothed column is the debiased EMA of the raw one; changing β recomputes it
    monitor.smoothing.value = 0.5
    loss = monitor.series["loss"].buffers["loss"].data
    assert np.allclose(loss.smooth, debiased_ema(loss.loss.to_numpy(), 0.5))
    assert len(drawn(root, "smooth")) >= 3  # a smoothed curve per core plot is drawn
    monitor.logy.value = True
    assert monitor.series["loss"].logy
    monitor.stop_polling()


def test_locked_controls_and_running_state(make_run):
    run = make_run(max_steps=400)
    type(run).LOCKED_WHILE_TRAINING = getattr(type(run), "LOCKED_WHILE_TRAINING", ("batch_size",))
    try:
        monitor = widgets.view(run)
        pn.panel(monitor).get_root()
        label = run.param[type(run).LOCKED_WHILE_TRAINING[0]].label
        widget = next(w for w in monitor.controls.layout.objects if getattr(w, "name", None) == label)
        assert not widget.disabled
        run.start(200)
        monitor.poll()
        assert monitor.is_training and widget.disabled and monitor.stop_button.disabled is False
        run.stop(wait=True, timeout=60)
        monitor.poll()
        assert not widget.disabled and not monitor.stop_button.disabled is False
    finally:
        if "LOCKED_WHILE_TRAINING" in vars(Run) and Run.LOCKED_WHILE_TRAINING == ("batch_size",):
            del Run.LOCKED_WHILE_TRAINING
    monitor.stop_polling()


def test_debiased_ema_starts_at_the_first_value():
    x = np.array([4.0, 2.0, 2.0])
    s = debiased_ema(x, 0.9)
    assert s[0] == 4.0 and 2.0 < s[2] < 4.0
