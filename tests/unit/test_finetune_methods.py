"""The PEFT family beyond LoRA (MiSS and its bat/mini variants, FourierFT, VeRA, AdaLoRA) and the optimizer-side
variants (LoRA-FA, LoRA+): step-0 no-op, ΔW = merge_and_unload() − W0, the same record variables for every method,
bad input refused before the model is touched, AdaLoRA's ranks over steps, A frozen under LoRA-FA, bit-identical
resume, mitigation on a merged copy.
"""

from __future__ import annotations

import math

import pytest
import torch

from workbench import data, models
from workbench.errors import ConfigError, NotFoundError
from workbench.finetune import METHODS, FineTune, delta_weights, fresh_copy, merged
from workbench.finetune.methods.adalora import current_ranks
from workbench.finetune.mitigation import mitigate
from workbench.matrices import weight_matrices

SMALL = dict(batch_size=4, eval_every=0, intruders_every=0, forget_eval="", init_batches=1, lr=1e-2, max_steps=20)

# (id, base family, settings): every method of the registry beyond LoRA, each variant once, LoRA-FA and LoRA+.
CASES = [
    ("miss", "llama", dict(method="miss", rank=4)),
    ("miss_bat", "llama", dict(method="miss", rank=4, variant="bat")),
    ("miss_mini", "llama", dict(method="miss", rank=4, variant="mini", mini_r=4)),
    ("fourierft", "gpt2", dict(method="fourierft", n_frequency=64)),
    ("vera", "gpt2", dict(method="vera", rank=16)),
    ("adalora", "gpt2", dict(method="adalora", rank=4, target_r=2)),
    ("lora_fa", "gpt2", dict(method="lora", rank=4, optimizer="lora_fa")),
    ("loraplus", "gpt2", dict(method="lora", rank=4, optimizer="loraplus", loraplus_lr_ratio=8.0)),
]
IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module")
def ds():
    return data.load("recipes", n_docs=40, n_val_docs=20, block_size=32)


@pytest.fixture(scope="module")
def bases(ds):
    return {"gpt2": models.build("gpt2-1m", data=ds, n_layer=2),
            "llama": models.build("llama-1m", data=ds, num_hidden_layers=2)}


def logits(model, ds):
    batch = ds.split("val").take(range(2))
    model.eval()
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"]).logits
    model.train()
    return out


def max_abs_delta(ft):
    return max(float(d.abs().max()) for d in delta_weights(ft.model, ft.reference, ft.target_matrices).values())


def test_every_registered_method_is_tested():
    tested = {kw["method"] for _, _, kw in CASES} | {"full", "lora", "lora_sb"}  # the last three: test_finetune.py
    assert tested == set(METHODS.names())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_noop_at_step_0_then_delta_equals_merge(case, bases, ds):
    _, fam, kw = case
    base = fresh_copy(bases[fam])
    before = logits(base, ds)
    ft = FineTune(base, ds, **{**SMALL, **kw})
    assert max_abs_delta(ft) < 1e-6, "ΔW ≠ 0 at step 0"
    torch.testing.assert_close(logits(ft.model, ds), before, atol=1e-5, rtol=1e-5)
    markers = ft.method_object.trainable_markers
    trainable = [n for n, p in ft.model.named_parameters() if p.requires_grad]
    assert trainable and all(any(m in n for m in markers) for n in trainable), trainable
    ft.run(3, progress=False)
    assert math.isfinite(ft.loss) and max_abs_delta(ft) > 1e-6
    # The true ΔW (effective weight − W0, probed through the PEFT layers) is PEFT's merge_and_unload() − W0.
    names = set(ft.target_matrices)
    plain = weight_matrices(merged(ft), include=lambda n: n in names)
    for name, d in delta_weights(ft.model, ft.reference, ft.target_matrices).items():
        torch.testing.assert_close(d, plain[name].float() - ft.reference.get(name), atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_the_same_record_variables_for_every_method(bases, ds):
    forget = data.load("stories", n_docs=1, n_val_docs=8, block_size=32)
    live = {**SMALL, "eval_every": 2, "intruders_every": 2, "eval_batches": 1}
    variables = {}
    for case_id, fam, kw in [("full", "gpt2", dict(method="full")), ("lora", "gpt2", dict(method="lora", rank=2))] + \
            [c for c in CASES if c[0] in ("miss", "fourierft", "vera", "adalora")]:
        ft = FineTune(fresh_copy(bases[fam]), ds, forget_data=forget, **{**live, **kw})
        ft.run(2, progress=False)
        rec = ft.record
        variables[case_id] = set(rec.data_vars) - {"adalora_rank"}
        assert list(rec.intruders.sel(step=2).dropna("matrix").matrix.values) == ft.target_matrices, case_id
        assert float(rec.intruders.sel(step=0).sum()) == 0, case_id
        assert rec.delta_effective_rank.sel(step=2).notnull().all(), case_id
        assert rec.pretrain_loss.sel(step=2).notnull(), case_id
    core = {"loss", "val_loss", "pretrain_loss", "intruders", "intruders_total", "effective_rank", "delta_norm",
            "delta_rel_norm", "delta_effective_rank"}
    assert all(core <= v for v in variables.values())
    assert all(v == variables["lora"] for v in variables.values()), variables


@pytest.mark.parametrize("fam, kw, error, match", [
    ("gpt2", dict(method="miss"), ConfigError, r"Conv1D.*'llama-1m'"),
    ("llama", dict(method="miss", rank=1000), ConfigError, "larger than the input dimension"),
    ("llama", dict(method="miss", rank=3, variant="bat"), ConfigError, "'bat' needs rank 3 to divide"),
    ("llama", dict(method="miss", rank=4, variant="mini", mini_r=5), ConfigError, "mini_r=5 to divide"),
    ("llama", dict(method="miss", variant="blocky"), ConfigError, "variant='blocky' is not valid"),
    ("gpt2", dict(method="fourierft", n_frequency=10**6), ConfigError, "n_frequency=1000000 is more than"),
    ("gpt2", dict(method="fourierft", n_frequency=0), ConfigError, "n_frequency=0 is not valid"),
    ("gpt2", dict(method="vera", rank=0), ConfigError, "rank must be a positive integer"),
    ("gpt2", dict(method="adalora", rank=2, target_r=4), ConfigError, "target_r=4 is larger than init_r"),
    ("gpt2", dict(method="adalora", rank=4, tinit=15, tfinal=5), ConfigError, "no budgeting phase"),
    ("gpt2", dict(method="adalora", rank=4, use_dora=True), ConfigError, "does not support DoRA"),
    ("gpt2", dict(method="lora", n_frequency=8), ConfigError, r"parameter of method \['fourierft'\]"),
    ("gpt2", dict(method="vera", optimizer="lora_fa"), ConfigError, "works on PEFT LoRA's A and B"),
    ("gpt2", dict(method="lora", optimizer="lora_fa", init="mica"), ConfigError, "freezes A"),
    ("gpt2", dict(method="lora", init="mica", rank=0), ConfigError, "rank must be a positive"),
    ("gpt2", dict(method="bone"), NotFoundError, "fine-tuning method"),
])
def test_bad_input_is_refused_before_the_model_is_touched(fam, kw, error, match, bases, ds):
    base = fresh_copy(bases[fam])
    state = {k: v.clone() for k, v in base.state_dict().items()}
    modules = [type(m) for m in base.modules()]
    with pytest.raises(error, match=match):
        FineTune(base, ds, **{**SMALL, **kw})
    assert not hasattr(base, "peft_config")
    assert [type(m) for m in base.modules()] == modules
    assert base.state_dict().keys() == state.keys()
    assert all(torch.equal(state[k], v) for k, v in base.state_dict().items())


def test_adalora_ranks_move_between_matrices_and_are_recorded(bases, ds):
    ft = FineTune(fresh_copy(bases["gpt2"]), ds, **{**SMALL, "method": "adalora", "rank": 8, "target_r": 2,
                                                    "max_steps": 10, "tinit": 1, "tfinal": 2})
    ft.run(10, progress=False)
    ranks = ft.record.adalora_rank  # step × matrix
    assert set(ranks.dims) == {"step", "matrix"} and sorted(ranks.matrix.values) == sorted(ft.target_matrices)
    assert (ranks.sel(step=0) == 8).all()
    totals = ranks.sum("matrix").values
    assert totals[-1] < totals[0] and (totals[1:] <= totals[:-1]).all()  # the budget only shrinks
    assert totals[-1] == 2 * len(ft.target_matrices)  # the final budget: target_r per matrix on average
    assert len({int(v) for v in ranks.isel(step=-1).values}) > 1  # reallocated, not cut uniformly
    now = current_ranks(ft.model)
    assert [now[m] for m in ranks.matrix.values] == [int(v) for v in ranks.isel(step=-1).values]


def test_lora_fa_leaves_a_unchanged_and_loraplus_scales_b(bases, ds):
    fa = FineTune(fresh_copy(bases["gpt2"]), ds, **{**SMALL, **CASES[IDS.index("lora_fa")][2]})
    a0 = {n: p.detach().clone() for n, p in fa.model.named_parameters() if "lora_A" in n}
    b0 = {n: p.detach().clone() for n, p in fa.model.named_parameters() if "lora_B" in n}
    fa.run(3, progress=False)
    params = dict(fa.model.named_parameters())
    assert type(fa.torch_optimizer).__name__ == "LoraFAOptimizer"
    assert a0 and all(torch.equal(params[n], a) for n, a in a0.items())
    assert all(not torch.equal(params[n], b) for n, b in b0.items())
    plus = FineTune(fresh_copy(bases["gpt2"]), ds, **{**SMALL, **CASES[IDS.index("loraplus")][2], "schedule": "cosine",
                                                      "warmup_steps": 2})
    plus.run(3, progress=False)
    groups = plus.torch_optimizer.param_groups
    b_ids = {id(p) for n, p in plus.model.named_parameters() if "lora_B" in n}
    lr_a = [g["lr"] for g in groups if g["params"] and id(g["params"][0]) not in b_ids]
    lr_b = [g["lr"] for g in groups if g["params"] and id(g["params"][0]) in b_ids]
    assert lr_a and lr_b and lr_b[0] == pytest.approx(8.0 * lr_a[0])
    assert lr_a[0] == pytest.approx(float(plus.record.lr.sel(step=3)))  # A follows the run's schedule


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("miss_bat", "fourierft", "vera", "adalora", "lora_fa")],
                         ids=["miss_bat", "fourierft", "vera", "adalora", "lora_fa"])
def test_checkpoint_resume_is_bit_identical(case, bases, ds, tmp_path):
    _, fam, kw = case
    kw = {**SMALL, **kw, "max_steps": 8, **({"tinit": 1} if kw["method"] == "adalora" else {})}
    a = FineTune(fresh_copy(bases[fam]), ds, **kw)
    a.run(3, progress=False)
    path = a.save_checkpoint(tmp_path / "ft.pt")
    a.run(3, progress=False)
    b = FineTune.resume(path, model=fresh_copy(bases[fam]), data=ds)
    assert (b.method, b.method_params, b.global_step) == (a.method, a.method_params, 3)
    b.run(3, progress=False)
    assert b.loss == a.loss
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    if kw["method"] == "adalora":
        assert b.record.adalora_rank.equals(a.record.adalora_rank)


def test_mitigation_works_on_a_non_lora_method(bases, ds):
    ft = FineTune(fresh_copy(bases["gpt2"]), ds, **{**SMALL, "method": "fourierft", "n_frequency": 64, "lr": 5e-2})
    ft.run(3, progress=False)
    snapshot = {k: v.clone() for k, v in ft.model.state_dict().items()}
    model, res = mitigate(ft, lam=0.0)
    assert all(torch.equal(snapshot[k], v) for k, v in ft.model.state_dict().items())  # run untouched
    assert not hasattr(model, "peft_config")
    assert int(res.intruders_after.sum()) <= int(res.intruders_before.sum())
    assert list(res.matrix.values) == ft.target_matrices
