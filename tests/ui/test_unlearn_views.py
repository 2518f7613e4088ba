"""Headless tests of the unlearning views: build the Bokeh models, poll, click Relearn, check streams got data."""

from __future__ import annotations

import copy

import panel as pn
import pytest
import xarray as xr

import widgets
from widgets.unlearn import TradeoffView, UnlearnMonitor
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
    view = widgets.view(run)
    assert isinstance(view, UnlearnMonitor)
    assert pn.panel(view).get_root() is not None
    run.run(4, progress=False)
    assert view.poll() > 0
    assert "⚠" not in view.message.object, view.message.object
    assert list(view.buffers["forget_prob"].data.step) == [0, 2, 4]
    assert len(view.buffers["forget_quality"].data) == 3
    assert len(view.trajectory.data) == 3
    assert view.relearn_button.disabled is False
    view.relearn_steps = 2
    view.relearn_button.clicks += 1
    assert view.last_relearn is not None, view.message.object
    assert list(view.relearn_result.object.index) == ["before", "after"]
    assert "→" in view.message.object
    view.weights_button.clicks += 1
    assert view.last_weights is not None, view.message.object
    assert len(view.weights.data) == len(view.last_weights.matrix) and (view.weights.data.relative_change > 0).any()
    view.stop_polling()


def test_unlearn_monitor_without_probe_explains(base, bench):
    run = Unlearn(copy.deepcopy(base), bench.split("forget"), method="ga", batch_size=4)
    view = UnlearnMonitor(run)
    pn.panel(view).get_root()
    assert view.relearn_button.disabled and "UnlearnProbe" in view.message.object
    view.stop_polling()


def test_tradeoff_view_plots_every_method():
    ds = xr.Dataset({"forget_quality": ("method", [0.1, 0.5, 0.9]), "model_utility": ("method", [0.3, 0.2, 0.25])},
                    coords={"method": ["ga", "npo", "npo+sam"]})
    view = TradeoffView(ds)
    assert pn.panel(view).get_root() is not None
    assert list(view.pipe.data.method) == ["ga", "npo", "npo+sam"]
    view.update(ds.drop_vars("model_utility"))
    assert "⚠" in view.message.object
