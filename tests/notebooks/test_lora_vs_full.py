"""lora_vs_full notebook with tiny parameters: every run trains, and the saved results compare them."""

from __future__ import annotations

from workbench import open_record


def test_lora_vs_full_tiny(run_notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))  # the tiny base is pre-trained here, not reused
    path = run_notebook("lora_vs_full", ranks=[1, 2], rslora_rank=2, max_steps=4, batch_size=4, eval_every=2,
                        eval_batches=1, n_docs=30, pretrain_steps=3, pretrain_docs=20, device="cpu")
    ds = open_record(path)
    assert list(ds.run.values) == ["full", "lora r=1", "lora r=2", "lora r=2 rs"]
    assert ds.sizes["matrix"] == 4 * 4  # c_attn, attn.c_proj, c_fc, mlp.c_proj × 4 layers
    for name in ("final_val_loss", "forgetting", "final_intruders", "mean_delta_effective_rank"):
        assert ds[name].notnull().all(), name
    assert ds.val_loss.sel(step=4).notnull().all() and ds.pretrain_loss.sel(step=0).notnull().all()
    assert float(ds.scaling.sel(run="lora r=2 rs")) > float(ds.scaling.sel(run="lora r=2"))
    assert list(ds.mitigation_lam.values) == [1.0, 0.75, 0.5, 0.0]
    # the mitigated run is the LoRA run with the most intruders, and λ = 1 (no mitigation) measures it as trained
    lora = ds.sel(run=[r for r in ds.run.values if r != "full"])
    assert ds.attrs["mitigated_run"] == str(lora.final_intruders.idxmax("run").item())
    assert float(ds.mitigation_intruders.sel(mitigation_lam=1.0)) == float(ds.final_intruders.sel(run=ds.attrs["mitigated_run"]))
    assert ds.mitigation_intruders.sel(mitigation_lam=0.0) <= ds.mitigation_intruders.sel(mitigation_lam=1.0)
