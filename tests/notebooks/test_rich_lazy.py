"""The rich_lazy notebook runs end to end with tiny parameters and writes its agreement fractions."""

from __future__ import annotations

import pytest
import xarray as xr

pytestmark = pytest.mark.notebook


def test_rich_lazy_notebook(run_notebook):
    path = run_notebook("rich_lazy", n_hidden=8, n_seeds=2, steps=3, n_train=32, n_probe=6, backend="serial")
    ds = xr.open_dataset(path)
    assert set(ds.init.values) == {"full", "low_rank", "aligned"} and ds.sizes["seed"] == 2
    assert (ds.status == "ok").all()
    assert 0 <= float(ds.agree_0) <= 1 and "low rank" in ds.attrs["agreement"]
    assert float(ds.effective_rank_init.sel(init="low_rank").max()) == pytest.approx(1.0, abs=1e-3)
