"""lora_inits notebook with tiny parameters: every init builds (ΔW = 0 at step 0), trains the same budget, is saved."""

from __future__ import annotations

from workbench import open_record


def test_lora_inits_tiny(run_notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    path = run_notebook("lora_inits", rank=2, max_steps=3, batch_size=4, init_batches=1, eval_every=3,
                        eval_batches=1, n_docs=30, pretrain_steps=3, pretrain_docs=20, device="cpu")
    ds = open_record(path)
    assert list(ds.run.values) == ["gaussian", "pissa", "olora", "lora_ga", "lora_sb"]
    assert (ds.steps == 3).all() and ds.final_val_loss.notnull().all()
    assert (ds.init_seconds > 0).all()
    assert ds.final_intruders.notnull().all() and ds.mean_delta_effective_rank.notnull().all()
    assert ds.attrs["skipped"] == "{}"


def test_lora_inits_reports_olora_skipped_on_gpt2(run_notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    path = run_notebook("lora_inits", model="gpt2-1m", inits=["gaussian", "olora"], rank=2, max_steps=2,
                        batch_size=4, init_batches=1, eval_every=2, eval_batches=1, n_docs=30, pretrain_steps=2,
                        pretrain_docs=20, device="cpu")
    ds = open_record(path)
    assert list(ds.run.values) == ["gaussian"]
    assert "olora" in ds.attrs["skipped"] and "Conv1D" in ds.attrs["skipped"]
