"""Run groups: combine records over a key, summarize with CIs, paired sign counts, differing configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from workbench import combine, config_table, sign_count, summarize
from workbench.errors import ConfigError


def _record(seed, steps, loss, lr=1e-3, **extra):
    return xr.Dataset({"loss": ("step", np.asarray(loss, float))}, coords={"step": steps},
                      attrs={"seed": seed, "run_id": f"r{seed}", "config": json.dumps({"seed": seed, "lr": lr, **extra})})


def test_identical_records_give_sd_zero_and_a_point_interval():
    runs = [_record(s, [1, 2, 3], [3.0, 2.0, 1.0]) for s in range(4)]
    s = summarize(combine(runs), over="seed")
    assert np.all(s.loss.sel(stat="sd").values == 0)
    np.testing.assert_array_equal(s.loss.sel(stat="ci_low").values, [3.0, 2.0, 1.0])
    np.testing.assert_array_equal(s.loss.sel(stat="ci_high").values, [3.0, 2.0, 1.0])
    assert np.all(s.loss.sel(stat="n").values == 4)


def test_steps_are_outer_joined_and_n_counts_what_is_there():
    a = _record(0, [10, 20], [1.0, 2.0])
    b = _record(1, [20, 30], [4.0, 5.0])
    ds = combine([b, a], over="seed")
    assert ds.step.values.tolist() == [10, 20, 30] and ds.seed.values.tolist() == [0, 1]
    assert np.isnan(ds.loss.sel(seed=1, step=10)) and np.isnan(ds.loss.sel(seed=0, step=30))
    s = summarize(ds)
    assert s.loss.sel(stat="n").values.tolist() == [1, 2, 1]
    assert float(s.loss.sel(stat="mean", step=20)) == 3.0
    assert np.isnan(float(s.loss.sel(stat="sd", step=10)))  # one run: no spread to report


def test_the_interval_covers_the_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    groups = rng.normal(2.0, 0.5, size=(2000, 5))  # 2000 experiments of 5 seeds each, true mean 2
    ds = xr.Dataset({"x": (("trial", "seed"), groups)}, coords={"seed": np.arange(5)})
    s = summarize(ds, over="seed")
    covered = ((s.x.sel(stat="ci_low") <= 2.0) & (2.0 <= s.x.sel(stat="ci_high"))).mean()
    assert 0.93 <= float(covered) <= 0.97
    # a z-interval (1.96) would under-cover at n = 5: the t quantile is what makes this pass
    half = (s.x.sel(stat="ci_high") - s.x.sel(stat="mean")) / (s.x.sel(stat="sd") / np.sqrt(5))
    np.testing.assert_allclose(half.values, 2.776, atol=1e-3)


def test_combine_over_any_config_key_and_refuses_duplicates():
    runs = [_record(0, [1], [1.0], lr=1e-3), _record(0, [1], [2.0], lr=1e-2)]
    ds = combine(runs, over="lr")
    assert ds.lr.values.tolist() == [1e-3, 1e-2]
    assert json.loads(ds.attrs["config"]) == {"seed": 0}  # only the shared keys
    with pytest.raises(ConfigError, match="Several records have seed"):
        combine(runs, over="seed")
    with pytest.raises(ConfigError, match="group by one of"):
        combine(runs, over="rank")


def test_sign_count_pairs_runs_by_seed():
    a = xr.DataArray([3.0, 2.0, 5.0, np.nan], dims="seed", coords={"seed": [0, 1, 2, 3]})
    b = xr.DataArray([1.0, 4.0, 1.0, 0.0], dims="seed", coords={"seed": [0, 1, 2, 3]})
    out = sign_count(a, b)
    assert (out["greater"], out["n"]) == (2, 3)
    assert out["mean_diff"] == pytest.approx(4.0 / 3)
    assert out["ci_low"] < out["mean_diff"] < out["ci_high"]


def test_config_table_shows_only_differing_keys():
    runs = [_record(0, [1], [1.0], rank=8), _record(1, [1], [1.0], rank=8), _record(2, [1], [1.0], rank=64)]
    table = config_table(runs)
    assert table.columns.tolist() == ["rank", "seed"]
    assert table["rank"].tolist() == [8, 8, 64]


def test_real_runs_combine_over_seed(tiny_run, tmp_path):
    paths = []
    for seed in (0, 1):
        run = tiny_run(seed=seed, max_steps=4, log_every=1)
        run.run(progress=False)
        paths.append(run.save_record(tmp_path / f"s{seed}.nc"))
    ds = combine(paths, over="seed")
    assert ds.loss.dims == ("seed", "step") and ds.sizes["step"] == 4
    assert not np.allclose(ds.loss.sel(seed=0), ds.loss.sel(seed=1))  # different data order and init streams
    s = summarize(ds)
    assert np.all(s.loss.sel(stat="ci_low") <= s.loss.sel(stat="mean"))


# ---------------------------------------------------------------- findings (appended by regevidence)
def test_finding_verdicts_follow_the_interval_and_the_expected_direction():
    from workbench.groups import finding

    seeds = {"seed": [0, 1, 2, 3]}
    a = xr.DataArray([2.0, 2.5, 1.5, 2.2], dims="seed", coords=seeds)
    b = xr.DataArray([1.0, 1.0, 1.0, 1.0], dims="seed", coords=seeds)
    up = finding("a above b", a, b)
    assert (up["verdict"], up["agree"], up["n"]) == ("reproduced", 4, 4) and up["ci_low"] > 0
    down = finding("a below b", a, b, expect="less")
    assert (down["verdict"], down["agree"]) == ("opposite", 0)
    noisy = xr.DataArray([3.0, -1.0, 2.0, -2.5], dims="seed", coords=seeds)
    flat = finding("noise above 0", noisy, 0.0)
    assert flat["verdict"] == "not settled" and flat["ci_low"] < 0 < flat["ci_high"] and flat["agree"] == 2
    assert "NOT SETTLED" in flat["text"] and "2/4 seeds" in flat["text"]
    one = finding("one pair", a.where(a.seed == 0), b)  # NaNs leave one pair
    assert one["verdict"] == "too few runs" and one["n"] == 1
    with pytest.raises(ConfigError, match="expect must be"):
        finding("x", a, b, expect="bigger")


def test_findings_dataset_and_ci_table():
    from workbench.groups import ci_table, finding, findings_dataset

    ds = xr.Dataset({"x": (("arm", "seed"), [[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])},
                    coords={"arm": ["a", "b"], "seed": [0, 1, 2]})
    f = [finding("b above a", ds.x.sel(arm="b"), ds.x.sel(arm="a")), finding("a above 0", ds.x.sel(arm="a"), 0.0)]
    out = findings_dataset(f)
    # b − a = 4, 3, 2: clear of 0; a alone = 1, 2, 3: mean 2 but the 3-seed interval ±2.5 covers 0
    assert out.sizes["finding"] == 2 and out.verdict.values.tolist() == ["reproduced", "not settled"]
    assert float(out.mean_diff[0]) == pytest.approx(3.0) and int(out.agree[0]) == 3
    table = ci_table(ds, over="seed")
    half = 4.303 * 1.0 / np.sqrt(3)  # t(0.975, 2) · sd / √n for a: sd 1
    assert table.loc["a", "x"] == f"2 ± {half:.2g}" and table.loc["b", "x"] == "5 ± 0"
    with pytest.raises(ConfigError, match="at least one finding"):
        findings_dataset([])
