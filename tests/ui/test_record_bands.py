"""Record view seed bands (#18) and the live view of a followed record (#13), headless.

The bands must be exactly what :func:`workbench.groups.summarize` gives for the records combined over the
seed; smoothing is the live plots' debiased EMA applied to each run before the statistics.
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import pytest
import xarray as xr

import widgets
from widgets.live_view import LiveRecordView
from widgets.record_view import RecordView
from widgets.series import debiased_ema
from workbench import Run, open_record
from workbench.groups import combine, config_table, summarize


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Five real tiny runs: lr 1e-3 over seeds 0, 1, 2 and lr 3e-3 over seeds 0, 1 (saved and reopened)."""
    from workbench import data

    stories = data.load("stories", n_docs=60, n_val_docs=8)
    folder = tmp_path_factory.mktemp("seeded")
    out = {}
    for lr, seeds in ((1e-3, (0, 1, 2)), (3e-3, (0, 1))):
        for seed in seeds:
            run = Run("gpt2-1m", stories, batch_size=4, eval_every=0, lr=lr, seed=seed, label=f"lr{lr:g} s{seed}")
            run.run(4, progress=False)
            path = folder / f"lr{lr:g}-s{seed}.nc"
            run.save_record(path)
            out[run.label] = open_record(path)
    return out


def _strip(da):
    return da.drop_vars([c for c in da.coords if c not in ("stat", "step")])


def test_bands_are_what_summarize_gives(seeded):
    view = RecordView(records=seeded)
    assert view.over == "seed"  # the default when the records differ in seed
    bands = view.band_data()
    assert list(bands) == ["lr=0.001", "lr=0.003"]
    for lr, group in ((1e-3, "lr=0.001"), (3e-3, "lr=0.003")):
        members = [ds for ds in seeded.values() if ds.attrs["label"].startswith(f"lr{lr:g} ")]
        expected = summarize(combine(members, over="seed"), over="seed").loss
        xr.testing.assert_allclose(_strip(bands[group]), _strip(expected))
    assert int(bands["lr=0.001"].sel(stat="n").max()) == 3
    sd = bands["lr=0.001"].sel(stat="sd").values
    assert np.isfinite(sd).all() and (sd > 0).any()  # different seeds: a real spread
    # drawn: one shaded interval and one mean curve per group, labelled with n
    layers = view.figure()
    kinds = [type(el).__name__ for el in layers]
    assert kinds == ["Area", "Curve", "Area", "Curve"], kinds
    assert "mean of 3 seeds" in layers.get(0).label and "mean of 2 seeds" in layers.get(2).label
    area = layers.get(0)
    stats = bands["lr=0.001"]
    np.testing.assert_allclose(area.dimension_values("ci_low"), stats.sel(stat="ci_low").values)
    np.testing.assert_allclose(area.dimension_values("ci_high"), stats.sel(stat="ci_high").values)
    hv.render(layers, backend="bokeh")  # and Bokeh draws it


def test_config_table_lists_the_keys_that_differ(seeded):
    view = RecordView(records=seeded)
    table = view.config_table.object
    assert view.config_table.visible and {"lr", "seed"} <= set(table.columns) and "label" not in table.columns
    assert list(table.index) == list(seeded)
    assert table.loc["lr0.003 s1", "seed"] == 1
    assert set(config_table(list(seeded.values())).columns) - {"label"} == set(table.columns)


def test_smoothing_and_log_y_are_the_live_plots_options(seeded):
    view = RecordView(records=seeded, smoothing=0.6, logy=True)
    members = [ds for ds in seeded.values() if ds.attrs["label"].startswith("lr0.001 ")]
    smoothed = [ds.assign(loss=ds.loss.copy(data=debiased_ema(ds.loss.values, 0.6))) for ds in members]
    expected = summarize(combine(smoothed, over="seed"), over="seed").loss
    xr.testing.assert_allclose(_strip(view.band_data()["lr=0.001"]), _strip(expected))
    curve = view.figure().get(1)
    assert hv.Store.lookup_options("bokeh", curve, "plot").kwargs["logy"] is True


def test_no_grouping_draws_one_curve_per_record(seeded):
    view = RecordView(records=seeded)
    view.over = "none"
    assert view.band_data() == {}
    fig = view.figure()
    assert len(fig) == 5 and all(type(el).__name__ == "Curve" for el in fig)


def test_per_matrix_variable_bands_the_chosen_row(tmp_path, seeded):
    records = {}
    for label, ds in seeded.items():
        ds = ds.copy()
        ds["norm"] = xr.DataArray(np.outer(ds.loss.values, [1.0, 2.0]), dims=("step", "matrix"),
                                  coords={"matrix": ["h.0.attn", "h.0.mlp"]})
        records[label] = ds
    view = RecordView(records=records)
    view.variable = "norm"
    view.row_select.value = "h.0.mlp"
    bands = view.band_data("h.0.mlp")
    members = [ds.norm.sel(matrix="h.0.mlp").to_dataset(name="norm").assign_attrs(ds.attrs)
               for ds in records.values() if ds.attrs["label"].startswith("lr0.001 ")]
    expected = summarize(combine(members, over="seed"), over="seed").norm
    xr.testing.assert_allclose(_strip(bands["lr=0.001"]), _strip(expected))
    assert type(view.figure().values()[-1].get(0)).__name__ == "Area"


def test_a_followed_record_shows_live_with_the_run_plots(tmp_path):
    from workbench import data

    run = Run("gpt2-1m", data.load("stories", n_docs=60, n_val_docs=8), batch_size=4, eval_every=0)
    path = tmp_path / "run.nc"
    run.publish(path, every=0)
    live = open_record(path, follow=True)
    view = widgets.view(live)
    assert isinstance(view, LiveRecordView)
    pn.panel(view).get_root()
    run.run(5, progress=False)
    view.poll()
    assert view.plots.part("loss").buffers["loss"].data["loss"].tolist() == run.history.column("loss")[1].tolist()
    assert "finished" in view.status.object and "step 5" in view.status.object
