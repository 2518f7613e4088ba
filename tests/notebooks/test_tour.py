"""The tour notebook under papermill: headless (blocking run) and interactive (the monitor is displayed)."""

from __future__ import annotations

import json

import pytest
import xarray as xr

from workbench import meta

pytestmark = pytest.mark.notebook


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    # The kernel inherits this: on a small shared CPU, oversubscribed OpenMP threads make steps ~10× slower.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_tour_headless_writes_its_record(run_notebook):
    path = run_notebook("00_tour", steps=8, n_docs=60, batch_size=4)
    ds = xr.load_dataset(path, engine="h5netcdf")
    info = meta(ds)
    assert info["status"] == "finished" and int(info["global_step"]) == 8
    assert ds.loss.dropna("step").sizes["step"] == 8
    assert "val_loss" in ds and info["config"]["max_steps"] == 8


def test_tour_interactive_displays_the_monitor(run_notebook, tmp_path):
    path = run_notebook("00_tour", steps=8, n_docs=60, batch_size=4, interactive=True)
    assert path.exists()
    out = json.loads((tmp_path / "00_tour.out.ipynb").read_text())
    mimes = {m for cell in out["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])
             for m in o.get("data", {})}
    # Displaying the run rendered a Panel/Bokeh view (the TrainingMonitor), not just its repr.
    assert "application/vnd.holoviews_exec.v0+json" in mimes, mimes


def test_tour_summarizes_the_run_over_seeds(run_notebook):
    path = run_notebook("00_tour", steps=6, n_docs=60, batch_size=4, seed=0, seeds=[1])
    band = xr.load_dataset(path.with_name("00_tour_seeds.nc"), engine="h5netcdf")
    main = xr.load_dataset(path, engine="h5netcdf")
    assert band.attrs["summarized_over"] == "seed" and set(band.stat.values) >= {"mean", "ci_low", "ci_high", "n"}
    final = band.val_loss.dropna("step", how="all").isel(step=-1)
    assert int(final.sel(stat="n")) == 2  # the main run (seed 0) and seed 1
    assert float(final.sel(stat="ci_low")) < float(final.sel(stat="mean")) < float(final.sel(stat="ci_high"))
    # the mean is over the two runs: the main run's own final value is one of them, not the mean
    assert float(main.val_loss.dropna("step")[-1]) != pytest.approx(float(final.sel(stat="mean")))
