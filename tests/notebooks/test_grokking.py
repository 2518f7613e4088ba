"""The grokking notebook runs end to end with tiny parameters and writes its curves, marks and checks."""

from __future__ import annotations

import pytest
import xarray as xr

pytestmark = pytest.mark.notebook


def test_grokking_notebook(run_notebook):
    path = run_notebook("grokking", p=7, steps=30, every=10, init_scales=[1.0, 3.0])
    ds = xr.open_dataset(path)
    assert list(ds.condition.values) == ["scale 1, wd 1", "scale 3, wd 1", "scale 3, wd 0"]
    assert list(ds.weight_decay.values) == [1.0, 1.0, 0.0]
    assert set(ds.step.values) == {0, 10, 20, 30}  # measured at the start and every 10 steps
    assert ((ds.train_accuracy >= 0) & (ds.train_accuracy <= 1)).all()
    assert (ds.relative_distance_from_init.sel(step=0) == 0).all()
    assert (ds.relative_distance_from_init.sel(step=[10, 20, 30]) > 0).all()
    assert {"fit_step", "generalize_step", "delay", "agree_0", "agree_1", "agree_2"} <= set(ds.data_vars)
    assert "no transition without weight decay" in ds.attrs["agreement"]
