"""lora_inits notebook with tiny parameters and two seeds: every init builds (ΔW = 0 at step 0), trains the same
budget on real text (python_docs → python_code), and the saved results carry steps-to-target per run, the
per-init means with CIs and a verdict per claim."""

from __future__ import annotations

import json

from workbench import open_record

from test_lora_vs_full import isolated_cache  # sibling module (tests/notebooks is on sys.path: no __init__.py)


def test_lora_inits_tiny(run_notebook, tmp_path, monkeypatch):
    isolated_cache(tmp_path, monkeypatch)
    inits = ["gaussian", "pissa", "olora", "lora_ga", "lora_sb"]
    path = run_notebook("lora_inits", seeds=[0, 1], rank=2, max_steps=4, batch_size=4, init_batches=1, eval_every=2,
                        eval_batches=1, pretrain_steps=3, device="cpu")
    ds = open_record(path)
    assert sorted(ds.run.values) == sorted(f"{n} s{s}" for n in inits for s in (0, 1))
    assert (ds.steps == 4).all() and ds.final_val_loss.notnull().all()
    assert (ds.init_seconds > 0).all()
    assert ds.final_intruders.notnull().all() and ds.mean_delta_effective_rank.notnull().all()
    assert ds.attrs["skipped"] == "{}"
    # steps to target: the first evaluated step at or below the target, or max_steps + eval_every if never
    target = ds.attrs["target_loss"]
    for run in ds.run.values:
        curve = ds.val_loss.sel(run=run).dropna("step")
        hit = curve.where(curve <= target, drop=True)
        expected = float(hit.step[0]) if hit.sizes["step"] else 4 + 2
        assert float(ds.steps_to_target.sel(run=run)) == expected, run
    # mean ± CI over the two seeds, per init
    x = ds.steps_to_target.sel(run=["lora_ga s0", "lora_ga s1"]).values
    stats = ds.init_steps_to_target.sel(lora_init="lora_ga")
    assert float(stats.sel(stat="mean")) == x.mean() and float(stats.sel(stat="n")) == 2
    assert list(ds.lora_init.values) == inits
    verdicts = json.loads(ds.attrs["verdicts"])
    assert set(verdicts) == {f"{n} {m}" for n in inits[1:] for m in ("steps_to_target", "final_val_loss")}
    assert set(verdicts.values()) <= {"reproduced", "opposite", "not settled"}
    assert "lora_ga > gaussian in steps_to_target in" in ds.attrs["findings"]


def test_lora_inits_reports_olora_skipped_on_gpt2(run_notebook, tmp_path, monkeypatch):
    isolated_cache(tmp_path, monkeypatch)
    path = run_notebook("lora_inits", model="gpt2-1m", seeds=[0, 1], inits=["gaussian", "olora"], rank=2, max_steps=2,
                        batch_size=4, init_batches=1, eval_every=2, eval_batches=1, pretrain_steps=2, device="cpu")
    ds = open_record(path)
    assert sorted(ds.run.values) == ["gaussian s0", "gaussian s1"]
    assert "olora" in ds.attrs["skipped"] and "Conv1D" in ds.attrs["skipped"]
