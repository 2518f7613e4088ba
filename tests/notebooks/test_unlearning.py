"""The unlearning notebook runs end to end with tiny parameters and writes results that hang together:
the target knows the forget set better than the oracle, the privacy section's intervals and verdicts are
what its own per-seed numbers give, and the oracle's privacy numbers are the reference ones."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats


@pytest.mark.notebook
@pytest.mark.slow
def test_unlearning_notebook(run_notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))  # a fresh, tiny target/oracle
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it: one thread is faster on a shared CPU
    seeds = [0, 1]
    path = run_notebook("unlearning", n_entities=6, pretrain_steps=5, finetune_steps=20, unlearn_steps=3,
                        probe_every=1, batch_size=4, relearn_examples=2, relearn_steps=2, seeds=seeds,
                        sam_methods=["npo"], sam_seeds=seeds, forget_sets=2)
    ds = xr.open_dataset(path)
    assert set(ds.method.values) == {"target", "oracle", "ga", "ga+sam", "npo", "npo+sam"}
    prob = ds.forget_prob.to_series()
    assert prob["target"] > prob["oracle"]  # the target trained on the forget facts, the oracle never did
    assert float(ds.kl_oracle_forget.sel({"method": "target"})) > 0.0
    assert {"prob_heldout_before", "prob_heldout_after", "curve_forget_prob", "delta_rel_norm"} <= set(ds.data_vars)
    assert int(ds.curve_forget_prob.notnull().sum()) >= 4 * 4  # steps 0..3 for each of the four runs

    # privacy over steps: every method and seed streamed the AUCs at steps 0..3
    curves = ds.privacy_mia_min_k_auc
    for m in ("ga", "npo", "dpo"):
        for s in seeds:
            assert int(curves.sel(privacy_method=m, privacy_seed=s).notnull().sum()) == 4, (m, s)
    # the oracle: privleak 0 and its Reference-attack AUC exactly 0.5 (its scores against itself are all 0)
    assert float(ds.privacy_privleak.sel(privacy_method="oracle").max()) == 0.0
    assert float(ds.privacy_mia_reference_auc.sel(privacy_method="oracle").max()) == 0.5
    # the summary's intervals and verdicts are what the saved per-seed final numbers give
    auc_oracle = float(ds.summary_mia_min_k_auc.sel(privacy_method="oracle"))
    for m in ("ga", "npo", "dpo"):
        x = ds.final_mia_min_k_auc.sel(privacy_method=m).values
        half_t = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
        delong = ((ds.final_mia_min_k_auc_high - ds.final_mia_min_k_auc_low) / 2).sel(privacy_method=m).mean().item()
        h = np.sqrt(half_t**2 + delong**2)
        row = ds.sel(privacy_method=m)
        assert float(row.summary_mia_min_k_auc) == pytest.approx(x.mean())
        assert float(row.summary_auc_t_half) == pytest.approx(half_t)
        assert float(row.summary_auc_low) == pytest.approx(x.mean() - h)
        assert bool(row.summary_passes_privacy_test) == (abs(x.mean() - auc_oracle) <= h)
        pl = ds.final_privleak.sel(privacy_method=m).values
        assert float(row.summary_privleak) == pytest.approx(pl.mean())
        assert pl == pytest.approx((x - auc_oracle) / auc_oracle)  # privleak is the Min-K % AUC against the oracle's

    # SAM vs plain against relearning: 2 forget sets × 2 seeds = 4 pairs, the finding is their paired difference
    after = ds.sam_study_sam_prob_heldout_after.sel(sam_method="npo") - ds.sam_study_plain_prob_heldout_after.sel(
        sam_method="npo")
    assert after.sizes["pair"] == 4 and sorted(set(ds.forget_set.values.tolist())) == [0, 1]
    assert float(ds.sam_mean_diff[0]) == pytest.approx(float(after.mean()))
    assert int(ds.sam_n[0]) == 4 and int(ds.sam_agree[0]) == int((after < 0).sum())
    half = stats.t.ppf(0.975, 3) * after.values.std(ddof=1) / 2
    assert float(ds.sam_ci_high[0]) == pytest.approx(float(after.mean()) + half)
    assert ds.sam_verdict[0].item() in {"reproduced", "opposite", "not settled"} and "npo+SAM" in ds.attrs["sam_findings"]
    by_set = after.groupby(ds.forget_set).mean()  # the forget set as the unit: 2 set means
    assert int(ds.sam_n[2]) == 2 and float(ds.sam_mean_diff[2]) == pytest.approx(float(by_set.mean()))
