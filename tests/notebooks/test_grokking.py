"""The grokking notebook runs end to end with tiny parameters and 2 seeds and writes curves, marks and findings."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

pytestmark = pytest.mark.notebook


def test_grokking_notebook(run_notebook):
    path = run_notebook("grokking", p=7, steps=30, every=10, init_scales=[1.0, 3.0], seeds=[0, 1])
    ds = xr.open_dataset(path)
    assert list(ds.condition.values) == ["scale 1, wd 1", "scale 3, wd 1", "scale 3, wd 0"]
    assert list(ds.weight_decay.values) == [1.0, 1.0, 0.0] and ds.seed.values.tolist() == [0, 1]
    assert set(ds.step.values) == {0, 10, 20, 30}  # measured at the start and every 10 steps
    assert ((ds.train_accuracy >= 0) & (ds.train_accuracy <= 1)).all()
    assert (ds.relative_distance_from_init.sel(step=0) == 0).all()
    assert (ds.relative_distance_from_init.sel(step=[10, 20, 30]) > 0).all()
    assert not ds.relative_distance_from_init.sel(seed=0).equals(ds.relative_distance_from_init.sel(seed=1))
    assert {"fit_step", "generalize_step", "delay", "final_val_accuracy"} <= set(ds.data_vars)
    # findings: paired over the 2 seeds, with the final-accuracy difference as its per-seed numbers give it
    assert ds.sizes["finding"] == 3
    acc = ds.final_val_accuracy
    diff = (acc.sel(condition="scale 3, wd 1") - acc.sel(condition="scale 3, wd 0")).values
    assert float(ds.mean_diff[1]) == pytest.approx(diff.mean()) and int(ds.n[1]) == 2
    assert np.isfinite(float(ds.ci_low[1])) and float(ds.ci_low[1]) <= float(ds.ci_high[1])
    assert "weight decay is needed" in ds.attrs["findings"]
