"""peft_family notebook with tiny parameters and two seeds: every method trains, budgets are matched, and the
saved results carry the per-method means, CIs and the verdict computed from them."""

from __future__ import annotations

from workbench import open_record


def test_peft_family_tiny(run_notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))  # the tiny base is pre-trained here, not reused
    methods = ["full", "lora", "lora_fa", "adalora", "miss", "fourierft", "vera"]
    path = run_notebook("peft_family", seeds=[0, 1], methods=methods, lora_rank=2, max_steps=4, batch_size=4,
                        eval_every=4, eval_batches=1, n_docs=30, pretrain_steps=3, pretrain_docs=20,
                        target_modules=["layers.0.self_attn.q_proj", "layers.0.mlp.down_proj"], device="cpu")
    ds = open_record(path)
    assert sorted(ds.run.values) == sorted(f"{m} s{s}" for m in methods for s in (0, 1))
    assert ds.sizes["matrix"] == 2
    for name in ("final_val_loss", "forgetting", "final_intruders", "mean_delta_effective_rank"):
        assert ds[name].notnull().all(), name
    assert list(ds.peft_method.values) == methods
    # matched budgets: every PEFT method within a factor 2 of LoRA's trainable count (LoRA-FA trains B only)
    trainable = ds.method_trainable_mean.to_series()
    for m in ("adalora", "miss", "fourierft", "vera"):
        assert 0.5 <= trainable[m] / trainable["lora"] <= 2.0, (m, trainable.to_dict())
    assert trainable["lora_fa"] < trainable["lora"] < trainable["full"]
    # the summary is the mean over the two seeds of the per-run numbers, with a CI
    lora = ds.final_intruders.sel(run=["lora s0", "lora s1"]).values
    assert float(ds.method_final_intruders_mean.sel(peft_method="lora")) == lora.mean()
    assert ds.method_final_intruders_ci95.notnull().all()
    assert "Verdict on 'low-rank structure causes intruders'" in ds.attrs["findings"]
    assert ds.attrs["verdict"].split(":")[0] in ("SUPPORTED", "CONTRADICTED", "NOT SETTLED")
