"""Headless tests of the unlearning views: build the Bokeh models, poll, click Relearn, check streams got data."""

from __future__ import annotations

import copy

import panel as pn
import pytest
import xarray as xr

import widgets
from widgets.monitor import TrainingMonitor
from widgets.unlearn import TradeoffView, Trajectory, UnlearnTools
from workbench import models
from workbench.unlearn import FactsBenchmark, Unlearn, UnlearnProbe


@pytest.fixture(scope="module")
def bench():
    return FactsBenchmark(n_entities=10)


@pytest.fixture(scope="module")
def base():
    return models.build("gpt2-1m", n_layer=1, n_embd=64, n_head=2)


def test_unlearn_monitor_streams_curves_and_relearns(base, bench):
    run = Unlearn(copy.deepcopy(base), bench.split("forget"), bench.split("retain"), method="npo", batch_size=4,
                  lr=1e-2, probes=[UnlearnProbe(bench, oracle=base, every=2)])
    monitor = widgets.view(run)
    assert isinstance(monitor, TrainingMonitor)  # the one monitor, configured
    assert pn.panel(monitor).get_root() is not None
    run.run(4, progress=False)
    assert monitor.poll() > 0
    assert not monitor.alert.visible, monitor.alert.object
    probs = monitor.part("forget_prob")  # the UnlearnProbe's panel: probabilities share one plot
    assert probs is monitor.part("retain_prob")
    assert list(probs.buffers["forget_prob"].data.step) == [0, 2, 4]
    assert len(monitor.part("forget_quality").buffers["forget_quality"].data) == 3
    panel = next(iter(monitor.probe_panels.values()))
    trajectory = next(p for p in panel.extra_parts if isinstance(p, Trajectory))
    assert len(trajectory.buffer.data) == 3
    view = next(e for e in monitor.extras if isinstance(e, UnlearnTools))
    assert view.relearn_button.disabled is False
    view.relearn_steps = 2
    view.relearn_button.clicks += 1
    assert view.last_relearn is not None, view.message.object
    assert list(view.relearn_result.object.index) == ["before", "after"]
    assert "→" in view.message.object
    view.weights_button.clicks += 1
    assert view.last_weights is not None, view.message.object
    assert len(view.weights_table.object) == len(view.last_weights.matrix)
    monitor.stop_polling()


def test_unlearn_monitor_without_probe_explains(base, bench):
    run = Unlearn(copy.deepcopy(base), bench.split("forget"), method="ga", batch_size=4)
    view = UnlearnTools(run)
    pn.panel(view).get_root()
    assert view.relearn_button.disabled and "UnlearnProbe" in view.message.object


def test_tradeoff_view_plots_every_method():
    ds = xr.Dataset({"forget_quality": ("method", [0.1, 0.5, 0.9]), "model_utility": ("method", [0.3, 0.2, 0.25])},
                    coords={"method": ["ga", "npo", "npo+sam"]})
    view = TradeoffView(ds)
    assert pn.panel(view).get_root() is not None
    assert list(view.pipe.data.method) == ["ga", "npo", "npo+sam"]
    view.update(ds.drop_vars("model_utility"))
    assert "⚠" in view.message.object
