"""The train_longer notebook runs with tiny parameters and 2 seeds and writes its findings with CIs."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

pytestmark = pytest.mark.notebook


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it


def test_train_longer_notebook_writes_findings_with_intervals(run_notebook):
    path = run_notebook("train_longer", seeds=[0, 1], steps=30, every=2, eval_every=6, eval_batches=2, warmup_steps=2,
                        fit_from=4, batch_size=4)
    ds = xr.open_dataset(path)
    assert ds.val_loss.dims == ("schedule", "seed", "step") and ds.seed.values.tolist() == [0, 1]
    # the two schedules are the same run until the decay starts (step 24), then WSD's lr falls to 0
    lr = ds.lr.sel(seed=0)
    assert np.allclose(lr.sel(schedule="wsd", step=slice(1, 24)), lr.sel(schedule="constant", step=slice(1, 24)))
    assert float(lr.sel(schedule="wsd").dropna("step")[-1]) < float(lr.sel(schedule="constant").dropna("step")[-1])
    assert int(ds.attrs["decay_start"]) == 24
    # every finding carries a paired 95 % CI over the 2 seeds, a sign count and a verdict
    assert ds.sizes["finding"] == 4 and (ds.n == 2).all()
    assert (ds.ci_low <= ds.mean_diff).all() and (ds.mean_diff <= ds.ci_high).all()
    assert set(ds.verdict.values) <= {"reproduced", "opposite", "not settled"}
    assert "distance from init" in ds.attrs["findings"] and "WSD" in ds.attrs["findings"]
    assert {"ci_low", "ci_high", "mean"} <= set(ds.stat.values.tolist())  # the seed bands of every curve
