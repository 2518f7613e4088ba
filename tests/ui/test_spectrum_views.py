"""Headless tests of the spectrum views: build the Bokeh models, poll, click, and check what reached the streams."""

from __future__ import annotations

import time

import numpy as np
import panel as pn
import pytest

import widgets
from bokeh.models import ColumnDataSource

from widgets.probe_view import ProbeView
from widgets.spectrum import SpectraReport, SpectrumExplorer, analyse
from workbench import Run, Snapshot, data, models
from workbench.matrices import weight_matrices
from workbench.spectra import SpectraProbe


@pytest.fixture(scope="module")
def stories():
    return data.load("stories", n_docs=60, n_val_docs=10)


@pytest.fixture
def probed_run(stories):
    probe = SpectraProbe(every=2, singular_values=True)
    run = Run("gpt2-1m", stories, probes=[probe], batch_size=4, max_steps=200, eval_every=0, log_every=2)
    yield run, probe
    run.stop(wait=True, timeout=60)


def test_spectra_probe_view_streams_while_training(probed_run):
    """The SpectraProbe's view (by shape) gets every measured step into what its heatmaps and snapshot draw."""
    run, probe = probed_run
    view = widgets.view(probe, run=run)
    assert isinstance(view, ProbeView)
    root = pn.panel(view).get_root()
    n = len(weight_matrices(run.model))
    run.run(4, progress=False)
    view.poll()
    erank = view.part("effective_rank")
    frame = erank.heat_pipe.data  # what the heatmap's DynamicMap draws
    assert sorted(set(frame.step)) == [0, 2, 4] and len(frame) == 3 * n
    assert np.isfinite(frame.effective_rank).all()
    intr = view.part("intruders")  # one heatmap for every per-matrix quantity of the probe, with a picker
    assert intr is erank and {"effective_rank", "stable_rank", "intruders"} <= set(intr.quantities)
    assert "intruders" not in frame
    intr.quantity = "intruders"  # picking a quantity redraws the heatmap (and the curve) with it
    assert intr.heat_pipe.data.query("step == 0").intruders.sum() == 0
    assert list(intr.curve_pipe.data.columns) == ["step", "intruders"]
    assert max(len(s.data["intruders"]) for s in root.select({"type": ColumnDataSource}) if "intruders" in s.data) == 3 * n
    # live: a background run keeps feeding the heatmaps through the poll
    run.start(4)
    t0 = time.time()
    while time.time() - t0 < 60 and 8 not in set(view.part("intruders").heat_pipe.data.step):
        view.poll()
        time.sleep(0.1)
    run.wait()
    view.poll()
    assert {6, 8} <= set(view.part("intruders").heat_pipe.data.step)
    # the snapshot follows the probe's singular values: first step (W0) vs the latest step
    snap = view.part("singular_values")
    assert snap.steps[-1] == 8 and set(snap.pipe.data.which) == {"first measured step (W0 at step 0)", "chosen step"}
    assert not view.alert.visible
    view.stop_polling()


def test_explorer_select_and_refresh():
    base = models.build("gpt2-1m", seed=0)
    tuned = models.build("gpt2-1m", seed=1)
    explorer = SpectrumExplorer(tuned, reference=Snapshot.from_model(base))
    pn.panel(explorer).get_root()
    name = "transformer.h.1.mlp.c_fc.weight"
    explorer.select.value = name
    data_ = explorer.pipe.data
    assert set(data_.which) == {"base (W0)", "current"}
    assert (data_.which == "current").sum() == 128  # min(512, 128) singular values
    with __import__("torch").no_grad():
        dict(tuned.named_parameters())[name].mul_(2.0)
    explorer.refresh_button.clicks += 1
    cur = explorer.pipe.data.query("which == 'current'").sigma.values
    ref = explorer.pipe.data.query("which == 'base (W0)'").sigma.values
    assert cur.max() > 1.5 * ref.max()


def test_analyse_panel_with_reference():
    base = models.build("gpt2-1m", seed=0)
    tuned = models.build("gpt2-1m", seed=0)
    report = analyse(tuned, reference=base)
    assert isinstance(report, SpectraReport)
    pn.panel(report).get_root()
    assert len(report.table) == len(weight_matrices(tuned))
    assert report.table.intruders.sum() == 0 and (report.table.subspace_overlap > 0.999).all()
    assert {"effective_rank", "stable_rank", "alpha"} <= set(report.table.columns)


def test_analyse_panel_in_top_k_mode():
    model = models.build("gpt2-1m", seed=0)
    report = analyse(model, top_k=8)
    pn.panel(report).get_root()
    assert report.spectra.sizes["index"] == 8 and report.table.effective_rank.isna().all()
    assert (report.table.stable_rank > 1).all()
