"""Fine-tuning lab: every LoRA init trains and is a no-op at step 0 (ΔW = 0 vs W0), LoRA-SB, bad input,
rsLoRA scaling, true ΔW for base-rewriting inits, live intruders and forgetting, mitigation, base cache.

Tiny models (2-layer gpt2-1m / llama-1m) and a few batches keep the file well under a minute and a half.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench import Snapshot, data, models
from workbench.errors import ConfigError, NotFoundError
from workbench.finetune import FineTune, LORA_INITS, delta_weights, fresh_copy, merged, pretrained_base
from workbench.finetune.lora_sb import LoraSBLayer
from workbench.finetune.mitigation import mitigate, mitigate_weights
from workbench.matrices import weight_matrices

SMALL = dict(batch_size=4, eval_every=0, intruders_every=0, forget_eval="", init_batches=1, lr=1e-2)


@pytest.fixture(scope="module")
def ds():
    return data.load("recipes", n_docs=40, n_val_docs=20, block_size=32)


@pytest.fixture(scope="module")
def bases(ds):
    return {fam: models.build(f"{fam}-1m", data=ds, n_layer=2) if fam == "gpt2" else
            models.build(f"{fam}-1m", data=ds, num_hidden_layers=2) for fam in ("gpt2", "llama")}


def logits(model, ds):
    batch = ds.split("val").take(range(2))
    model.eval()
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"]).logits
    model.train()
    return out


def max_abs_delta(ft):
    return max(float(d.abs().max()) for d in delta_weights(ft.model, ft.reference, ft.target_matrices).values())


INITS = ["default", "gaussian", "pissa", "pissa_niter_2", "olora", "orthogonal", "eva", "corda", "lora_ga", "mica"]


def test_every_registered_init_is_tested():
    assert set(LORA_INITS.names()) == {"pissa_niter_k" if i.startswith("pissa_niter") else i for i in INITS}


@pytest.mark.parametrize("init", INITS)
def test_init_is_noop_then_trains(init, bases, ds):
    fam = "llama" if init == "olora" else "gpt2"  # OLoRA fails on GPT-2's Conv1D in PEFT 0.21 (checked below)
    base = fresh_copy(bases[fam])
    before = logits(base, ds)
    ft = FineTune(base, ds, method="lora", rank=4, init=init, **SMALL)
    assert max_abs_delta(ft) < 1e-5, f"{init}: ΔW ≠ 0 at step 0"
    torch.testing.assert_close(logits(ft.model, ds), before, atol=1e-4, rtol=1e-4)
    trainable = [n for n, p in ft.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ft.run(2, progress=False)
    assert math.isfinite(ft.loss)
    assert max_abs_delta(ft) > 1e-5


def test_base_rewriting_init_true_delta_is_not_get_delta_weight(bases, ds):
    ft = FineTune(fresh_copy(bases["gpt2"]), ds, method="lora", rank=4, init="pissa", **SMALL)
    name = ft.target_matrices[0]
    layer = ft.model.get_submodule("base_model.model." + name.rsplit(".", 1)[0])
    s = layer.scaling["default"]
    b0a0 = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight).detach().clone()  # [out, in]
    assert float(layer.get_delta_weight("default").detach().abs().max()) > 1e-3  # PEFT's "delta" is large at step 0 …
    ft.run(2, progress=False)
    ba = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight).detach()
    true = delta_weights(ft.model, ft.reference, [name])[name]
    torch.testing.assert_close(true, s * (ba - b0a0), atol=1e-5, rtol=1e-4)  # … the true one is s·(BA − B0A0)


def test_olora_on_conv1d_is_refused_before_modifying(bases, ds):
    base = fresh_copy(bases["gpt2"])
    state = {k: v.clone() for k, v in base.state_dict().items()}
    with pytest.raises(ConfigError, match="Conv1D"):
        FineTune(base, ds, method="lora", rank=4, init="olora", **SMALL)
    assert all(torch.equal(state[k], v) for k, v in base.state_dict().items())


def test_lora_sb_structure_gradient_init_and_merge(bases, ds):
    base = fresh_copy(bases["gpt2"])
    before = logits(base, ds)
    ft = FineTune(base, ds, method="lora_sb", rank=4, alpha=4.0, **SMALL)
    layers = [m for m in ft.model.modules() if isinstance(m, LoraSBLayer)]
    assert len(layers) == len(ft.target_matrices) == 2 * 4
    assert [n for n, p in ft.model.named_parameters() if p.requires_grad] and all(
        "workbench_adapter_R" in n for n, p in ft.model.named_parameters() if p.requires_grad)
    assert max_abs_delta(ft) == 0.0
    torch.testing.assert_close(logits(ft.model, ds), before)
    # The effective weight it reports is the linear map it applies.
    layer = layers[0]
    x = torch.randn(5, layer.in_features)
    torch.testing.assert_close(layer(x), x @ layer.workbench_effective_weight().T + layer.bias, atol=1e-5, rtol=1e-5)
    # First gradient on R is diagonal: B and A are the singular vectors of the first full gradient.
    ft.setup()
    ft.torch_optimizer.zero_grad()
    ft.forward_backward(ft._batch(0))
    g = layer.workbench_adapter_R.grad
    off = g - torch.diag(torch.diagonal(g))
    assert float(off.abs().max()) < 1e-3 * float(g.abs().max())
    assert bool((torch.diagonal(g) <= 0).all())  # descent increases R along +Σ (we used -G = UΣVᵀ)
    ft.torch_optimizer.zero_grad()
    ft.run(3, progress=False)
    assert max_abs_delta(ft) > 0
    plain = merged(ft)
    assert not any(isinstance(m, LoraSBLayer) for m in plain.modules())
    torch.testing.assert_close(logits(plain, ds), logits(ft.model, ds), atol=1e-5, rtol=1e-5)


def test_rslora_scaling(bases, ds):
    for rs, expected in ((False, 16 / 4), (True, 16 / 2)):
        ft = FineTune(fresh_copy(bases["llama"]), ds, method="lora", rank=4, alpha=16, use_rslora=rs, **SMALL)
        layer = ft.model.get_submodule("base_model.model.model.layers.0.self_attn.q_proj")
        assert layer.scaling["default"] == pytest.approx(expected) == ft.scaling()


def test_full_finetune_trains_everything_and_dora_runs(bases, ds):
    ft = FineTune(fresh_copy(bases["llama"]), ds, method="full", **SMALL)
    assert all(p.requires_grad for p in ft.model.parameters())
    ft.run(2, progress=False)
    assert max_abs_delta(ft) > 0
    dora = FineTune(fresh_copy(bases["llama"]), ds, method="lora", rank=4, use_dora=True, **SMALL)
    assert max_abs_delta(dora) < 1e-5
    dora.run(2, progress=False)
    assert max_abs_delta(dora) > 0


@pytest.mark.parametrize("kw, error, match", [
    (dict(rank=0), ConfigError, "rank must be a positive"),
    (dict(rank=10_000), ConfigError, "larger than the targeted matrix"),
    (dict(target_modules=["nope"]), ConfigError, r"match no linear module.*c_attn"),
    (dict(target_modules="h\\.9\\..*"), ConfigError, "match no linear module"),
    (dict(init="pisa"), NotFoundError, "Did you mean 'pissa'"),
    (dict(init="lora_ga", init_batches=0), ConfigError, "data-driven"),
    (dict(method="lora_sb", init_batches=0), ConfigError, "needs training data"),
    (dict(method="lora_sb", use_dora=True), ConfigError, "use_dora applies to PEFT LoRA only"),
    (dict(alpha=0.0), ConfigError, "alpha must be"),
    (dict(alpha=-1.0), ConfigError, "alpha must be"),
    (dict(init="orthogonal", rank=3), ConfigError, "even rank"),
])
def test_bad_input_is_refused_before_anything_is_modified(kw, error, match, bases, ds):
    base = fresh_copy(bases["gpt2"])
    state = {k: v.clone() for k, v in base.state_dict().items()}
    with pytest.raises(error, match=match):
        FineTune(base, ds, **{**SMALL, **kw})
    assert not hasattr(base, "peft_config")
    assert all(torch.equal(state[k], v) for k, v in base.state_dict().items())
    assert all(not isinstance(m, LoraSBLayer) for m in base.modules())


def test_peft_model_and_merged_adapters_are_refused(bases, ds):
    ft = FineTune(fresh_copy(bases["gpt2"]), ds, method="lora", rank=4, **SMALL)
    with pytest.raises(ConfigError, match="already a PEFT model"):
        FineTune(ft.model, ds, **SMALL)
    ft.model.merge_adapter()
    with pytest.raises(ConfigError, match="(merged|PEFT)"):
        FineTune(ft.model.base_model.model, ds, **SMALL)
    sb = FineTune(fresh_copy(bases["gpt2"]), ds, method="lora_sb", rank=2, **SMALL)
    with pytest.raises(ConfigError, match="LoRA-SB"):
        FineTune(sb.model, ds, **SMALL)


def test_live_intruders_and_forgetting_in_the_record(bases, ds):
    forget = data.load("stories", n_docs=1, n_val_docs=10, block_size=32)
    ft = FineTune(fresh_copy(bases["gpt2"]), ds, method="lora", rank=2, forget_data=forget,
                  **{**SMALL, "eval_every": 2, "intruders_every": 2, "eval_batches": 1})
    ft.run(4, progress=False)
    rec = ft.record
    assert {"val_loss", "pretrain_loss", "intruders", "intruders_total", "delta_effective_rank"} <= set(rec.data_vars)
    assert list(rec.intruders.sel(step=4).dropna("matrix").matrix.values) == ft.target_matrices
    assert float(rec.intruders.sel(step=0).sum()) == 0
    assert rec.pretrain_loss.sel(step=4).notnull()


def test_compare_runs_measures_what_moved_when_the_record_has_nothing(bases, ds):
    from workbench.finetune.compare import compare_runs
    from workbench.spectra.moved import what_moved

    ft = FineTune(fresh_copy(bases["gpt2"]), ds, method="lora", rank=2, **SMALL)  # intruders_every=0: no probes
    ft.run(2, progress=False)
    assert "intruders" not in ft.record and "intruders" not in compare_runs([ft], measure=False)
    out = compare_runs([ft]).sel(run="lora r=2")
    now = what_moved(ft.reference, ft.model, names=ft.target_matrices, k=ft.intruder_k, eps=ft.intruder_eps)
    assert list(out.matrix.values) == ft.target_matrices
    for name in ("intruders", "delta_effective_rank", "delta_norm", "delta_rel_norm"):
        np.testing.assert_allclose(out[name], now[name], rtol=1e-6, err_msg=name)
    assert float(out.final_intruders) == float(now.intruders.sum())
    assert float(out.mean_delta_effective_rank) == pytest.approx(float(now.delta_effective_rank.mean()))
    assert float(out.delta_norm.min()) > 0  # the adapted matrices moved


def test_mitigation_removes_a_planted_intruder():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Linear(64, 32))
    ref = Snapshot.from_model(model)
    w0 = ref.get("0.weight")  # [64, 32]: its 32 left singular vectors leave a 32-dim complement
    u0 = torch.linalg.svd(w0)[0]  # [64, 64]
    # A strong rank-1 update along a direction orthogonal to every left singular vector of W0.
    x = u0[:, 32:] @ torch.randn(32)
    y = torch.randn(32)
    with torch.no_grad():
        model[0].weight.add_(5 * torch.outer(x / x.norm(), y / y.norm()) * float(torch.linalg.matrix_norm(w0, 2)))
    other = model[1].weight.detach().clone()
    from workbench.spectra import intruder_dimensions

    assert int(intruder_dimensions(ref, weight_matrices(model)).sel(matrix="0.weight")) == 1
    counts = mitigate_weights(model, ref, ["0.weight", "1.weight"], lam=0.0)
    assert counts == {"0.weight": 1, "1.weight": 0}
    assert int(intruder_dimensions(ref, weight_matrices(model)).sum()) == 0
    assert torch.equal(model[1].weight, other)
    with pytest.raises(ConfigError, match="lam"):
        mitigate_weights(model, ref, ["0.weight"], lam=float("nan"))


def test_mitigate_run_returns_a_copy_and_measures(bases, ds):
    ft = FineTune(fresh_copy(bases["gpt2"]), ds, method="lora", rank=1, alpha=64.0,
                  **{**SMALL, "lr": 5e-2, "eval_every": 100})
    ft.run(6, progress=False)
    snapshot = {k: v.clone() for k, v in ft.model.state_dict().items()}
    model, res = mitigate(ft, lam=0.0)
    assert all(torch.equal(snapshot[k], v) for k, v in ft.model.state_dict().items())  # run untouched
    assert not hasattr(model, "peft_config")
    assert int(res.intruders_after.sum()) <= int(res.intruders_before.sum())
    assert "val_loss" in res and math.isfinite(float(res.val_loss))


def test_pretrained_base_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    a = pretrained_base("llama-1m", steps=2, batch_size=2, n_docs=20)
    from workbench.finetune import pretrain

    monkeypatch.setattr(pretrain, "_train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    b = pretrained_base("llama-1m", steps=2, batch_size=2, n_docs=20)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert b.workbench_origin["pretrain"]["steps"] == 2 and "preset" not in b.workbench_origin
    assert (tmp_path / "bases").is_dir()
    with pytest.raises(ConfigError, match="Unknown pre-training setting"):
        pretrained_base("llama-1m", stpes=3)


def test_checkpoint_resume_is_bit_identical(bases, ds, tmp_path):
    a = FineTune(fresh_copy(bases["gpt2"]), ds, method="lora", rank=4, init="pissa", **SMALL)
    a.run(2, progress=False)
    path = a.save_checkpoint(tmp_path / "ft.pt")
    a.run(2, progress=False)
    b = FineTune.resume(path, model=fresh_copy(bases["gpt2"]), data=ds)
    assert (b.method, b.init, b.rank, b.global_step) == ("lora", "pissa", 4, 2)
    b.run(2, progress=False)
    assert b.loss == a.loss
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_adapter_init_is_seeded_not_global(bases, ds):
    torch.manual_seed(123)
    a = FineTune(fresh_copy(bases["gpt2"]), ds, method="lora", rank=4, init="gaussian", **SMALL)
    torch.manual_seed(456)
    b = FineTune(fresh_copy(bases["gpt2"]), ds, method="lora", rank=4, init="gaussian", **SMALL)
    c = FineTune(fresh_copy(bases["gpt2"]), ds, method="lora", rank=4, init="gaussian", **{**SMALL, "seed": 1})
    la, lb, lc = ([p for n, p in r.model.named_parameters() if "lora_A" in n][0] for r in (a, b, c))
    assert torch.equal(la, lb) and not torch.equal(la, lc)
