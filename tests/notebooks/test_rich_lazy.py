"""The rich_lazy notebook runs end to end with tiny parameters and 2 seeds and writes its findings with CIs."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

pytestmark = pytest.mark.notebook


def test_rich_lazy_notebook(run_notebook):
    path = run_notebook("rich_lazy", n_hidden=8, seeds=[3, 5], steps=3, n_train=32, n_probe=6, backend="serial")
    ds = xr.open_dataset(path)
    assert set(ds.init.values) == {"full", "low_rank", "aligned"} and ds.seed.values.tolist() == [3, 5]
    assert (ds.status == "ok").all()
    assert float(ds.effective_rank_init.sel(init="low_rank").max()) == pytest.approx(1.0, abs=1e-3)
    # per-condition mean and 95 % CI over the two seeds, as the per-seed numbers give them
    x = ds.delta_rel_norm.sel(init="full").values
    half = stats.t.ppf(0.975, 1) * x.std(ddof=1) / np.sqrt(2)
    assert float(ds.delta_rel_norm_ci.sel(init="full", stat="ci_high")) == pytest.approx(x.mean() + half)
    # five findings, each a paired difference over the seeds with a CI, a sign count and a verdict
    assert ds.sizes["finding"] == 5 and (ds.n == 2).all()
    d = ds.delta_rel_norm.sel(init="low_rank") - ds.delta_rel_norm.sel(init="full")
    assert float(ds.mean_diff[0]) == pytest.approx(float(d.mean()))
    assert int(ds.agree[0]) == int((d > 0).sum())
    assert (ds.ci_low <= ds.ci_high).all() and "low rank moves weights" in ds.attrs["findings"]
