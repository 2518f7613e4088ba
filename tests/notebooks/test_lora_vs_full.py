"""lora_vs_full notebook with tiny parameters and two seeds: every run trains on real text (python_docs →
python_code), the matched-loss point is found, and the saved results carry the per-setting means, CIs, sign
counts and a verdict per finding."""

from __future__ import annotations

import json
import shutil

from workbench import open_record
from workbench.data.tokenizer import cache_dir as tokenizer_cache


def isolated_cache(tmp_path, monkeypatch):
    """A fresh cache for the tiny bases, seeded with the tokenizers already trained here (training the python
    BPE again would take most of the test's time; the tokenizer cache is keyed by its settings and text)."""
    known = tokenizer_cache()
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    if known.is_dir():
        shutil.copytree(known, tokenizer_cache())


def test_lora_vs_full_tiny(run_notebook, tmp_path, monkeypatch):
    isolated_cache(tmp_path, monkeypatch)
    path = run_notebook("lora_vs_full", seeds=[0, 1], ranks=[1, 2], scalings=["2r", "rslora"], alpha=2.0,
                        max_steps=4, batch_size=4, eval_every=2, eval_batches=1, pretrain_steps=3, device="cpu",
                        target_modules=["h.0.attn.c_attn", "h.3.mlp.c_fc"], mitigation_lams=[1.0, 0.0])
    ds = open_record(path)
    # alpha=2r: s=2 at both ranks; rsLoRA alpha=2: s=2 (r=1, the same run), 1.41 (r=2) → distinct (rank, s) runs only
    settings = ["full", "lora r=1 s=2", "lora r=2 s=2", "lora r=2 s=1.41"]
    assert sorted(ds.run.values) == sorted(f"{s} s{seed}" for s in settings for seed in (0, 1))
    assert ds.sizes["matrix"] == 2
    for name in ("final_val_loss", "forgetting", "final_intruders", "mean_delta_effective_rank"):
        assert ds[name].notnull().all(), name
    # the matched-loss point: the first evaluated step at or below the common target, for every run
    target = ds.attrs["target_loss"]
    assert ds.target_step.notnull().any()
    for run in ds.run.values:
        step = float(ds.target_step.sel(run=run))
        curve = ds.val_loss.sel(run=run).dropna("step")
        if step != step:  # never reached: every evaluated loss stays above the target
            assert float(curve.min()) > target, run
            continue
        assert float(curve.sel(step=step)) <= target < float(curve.where(curve.step < step, drop=True).min()
                                                            if (curve.step < step).any() else float("inf"))
        assert float(ds.intruders_at_target.sel(run=run)) == float(ds.intruders_total.sel(run=run, step=step))
    # mean ± CI over the two seeds, per setting
    x = ds.final_intruders.sel(run=["lora r=1 s=2 s0", "lora r=1 s=2 s1"]).values
    stats = ds.setting_final_intruders.sel(setting_name="lora r=1 s=2")
    assert float(stats.sel(stat="mean")) == x.mean() and float(stats.sel(stat="n")) == 2
    assert float(stats.sel(stat="ci_low")) <= x.mean() <= float(stats.sel(stat="ci_high"))
    verdicts = json.loads(ds.attrs["verdicts"])
    assert set(verdicts.values()) <= {"reproduced", "opposite", "not settled"}
    assert "intruders 2r r=1 matched" in verdicts and "rank rslora r=1 equal" in verdicts
    assert "seeds (mean difference" in ds.attrs["findings"] and "/2 seeds" in ds.attrs["findings"]
    assert float(ds.scaling.sel(run="lora r=2 s=1.41 s0")) < float(ds.scaling.sel(run="lora r=2 s=2 s0"))
    assert list(ds.mitigation_lam.values) == [1.0, 0.0]
    assert ds.attrs["pretrain_flattening"] != -1.0  # the tiny base recorded its pre-training curve
