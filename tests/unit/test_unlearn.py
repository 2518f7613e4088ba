"""Unlearning lab: each loss against its formula, padding invariance, SAM(ρ=0) = plain, frozen π_ref,
WAGLE mask (and its callback order), forget quality, LoRA, and bad input (clear errors, nothing modified)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench import models
from workbench.errors import ConfigError, NotFoundError
from workbench.unlearn import (METHODS, FactsBenchmark, Unlearn, evaluate, forget_quality, plain_backward,
                               relearn_attack, sam_backward, truth_ratio)
from workbench.unlearn.methods.flat import DIVERGENCES


@pytest.fixture(scope="module")
def bench():
    return FactsBenchmark(n_entities=10, seed=0)


@pytest.fixture(scope="module")
def base():
    return models.build("gpt2-1m", n_layer=2, n_embd=64, n_head=2, seed=0)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def make(base, bench, **params):
    params.setdefault("batch_size", 4)
    params.setdefault("max_steps", 2)
    return Unlearn(copy.deepcopy(base), bench.split("forget"), bench.split("retain"), **params)


def batch_of(bench, which="forget", n=4):
    return bench.split(which).take(np.arange(n))


def ref_logp(model, batch, prefix=""):
    """Independent reference: per-sequence summed log-prob via F.cross_entropy (float64)."""
    out = model(input_ids=batch[f"{prefix}input_ids"], attention_mask=batch[f"{prefix}attention_mask"])
    logits = out.logits[:, :-1].double()
    labels = batch[f"{prefix}labels"][:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none",
                         ignore_index=-100).view(labels.shape)
    return -ce.sum(-1), (labels != -100).sum(-1)


def ref_mean_prob(model, batch, prefix=""):
    out = model(input_ids=batch[f"{prefix}input_ids"], attention_mask=batch[f"{prefix}attention_mask"])
    p = torch.softmax(out.logits[:, :-1].double(), -1)
    labels = batch[f"{prefix}labels"][:, 1:]
    mask = labels != -100
    pt = p.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return pt.sum(-1) / mask.sum(-1)


# --------------------------------------------------------------------------- data
def test_facts_deterministic_nested_and_masked(bench):
    again = FactsBenchmark(n_entities=10, seed=0)
    assert [f.answer for f in again.facts] == [f.answer for f in bench.facts]
    assert FactsBenchmark(n_entities=10, seed=1).facts[0].answer != bench.facts[0].answer
    big = FactsBenchmark(n_entities=100)
    f1, f5, f10 = (set(big.forget_ids(x)) for x in (0.01, 0.05, 0.10))
    assert len(f1) == 4 and len(f5) == 20 and len(f10) == 40 and f1 < f5 < f10
    assert not set(big.retain_ids(0.1)) & f10 and len(big.retain_ids(0.1)) + len(f10) == len(big.ids("all"))
    hold = set(big.holdout_ids())  # never trained: in no trainable split, same templates
    assert len(hold) == 4 * 10 and not hold & set(big.ids("all")) and not hold & set(big.split("retain").tensors["fact_id"].tolist())
    assert {big.facts[i].attribute for i in hold} == {"birthplace", "profession", "animal", "year"}
    assert [f.answer for f in FactsBenchmark(n_entities=100, n_holdout=0).facts] == [big.facts[i].answer for i in big.ids("all")]
    s = bench.split("forget")
    t = s.tensors
    assert (t["labels"][t["attention_mask"] == 0] == -100).all()
    for i in range(len(s)):
        fact = bench.facts[int(t["fact_id"][i])]
        answer_ids = t["labels"][i][t["labels"][i] != -100].tolist()
        assert bench.tokenizer.decode(answer_ids[:-1]).strip() == fact.answer  # last label = eos
        assert answer_ids[-1] == bench.tokenizer.eos_token_id
    assert "refusal_input_ids" in t and all(len(f.perturbed) == 3 for f in bench.facts)


# --------------------------------------------------------------------------- losses vs formulas
def _stage(base, bench, **params):
    return make(base, bench, **params)


def test_ga_and_graddiff_formulas(base, bench):
    f, r = batch_of(bench), batch_of(bench, "retain")
    st = _stage(base, bench, method="ga")
    loss, _ = st.method_params.forget_term(st, f)
    logp, _ = ref_logp(st.model, f)
    assert loss.item() == pytest.approx(logp.mean().item(), rel=1e-5)
    st = _stage(base, bench, method="graddiff", retain_weight=0.7)
    terms = st.method_params.terms(st, f, r)
    lr, nr = ref_logp(st.model, r)
    assert terms.total.item() == pytest.approx((logp.mean() + 0.7 * (-lr.sum() / nr.sum())).item(), rel=1e-5)


def test_npo_at_reference_is_2_over_beta_ln2_with_ga_gradient(base, bench):
    f = batch_of(bench)
    for beta in (0.1, 1.0, 3.0):
        st = _stage(base, bench, method="npo", beta=beta, retain_weight=0.0)
        loss, _ = st.method_params.forget_term(st, f)
        assert loss.item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    params = [p for p in st.model.parameters()]
    g_npo = torch.autograd.grad(st.method_params.forget_term(st, f)[0], params, allow_unused=True)
    ga = _stage(base, bench, method="ga")
    g_ga = torch.autograd.grad(ga.method_params.forget_term(ga, f)[0], list(ga.model.parameters()), allow_unused=True)
    for a, b in zip(g_npo, g_ga):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_npo_away_from_reference_matches_formula(base, bench):
    f = batch_of(bench)
    st = _stage(base, bench, method="npo", beta=0.5, retain_weight=0.0)
    with torch.no_grad():
        for p in st.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    loss, _ = st.method_params.forget_term(st, f)
    lp, _ = ref_logp(st.model, f)
    lr, _ = ref_logp(st.reference_model, f)
    expected = (2 / 0.5) * torch.log1p(torch.exp(lp - lr) ** 0.5).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_simnpo_formula(base, bench):
    f = batch_of(bench)
    st = _stage(base, bench, method="simnpo", beta=2.0, delta=0.3, retain_weight=0.0)
    loss, _ = st.method_params.forget_term(st, f)
    lp, n = ref_logp(st.model, f)
    expected = -(2 / 2.0) * F.logsigmoid(-(2.0 / n) * lp - 0.3).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("div", sorted(DIVERGENCES))
def test_flat_formula(base, bench, div):
    f = batch_of(bench)
    st = _stage(base, bench, method="flat", f_divergence=div)
    loss, _ = st.method_params.forget_term(st, f)
    pe, pf = ref_mean_prob(st.model, f, "refusal_"), ref_mean_prob(st.model, f)
    gstar = {"kl": lambda v: v, "tv": lambda v: 0.5 * torch.tanh(v), "pearson": lambda v: v,
             "js": lambda v: math.log(2) - torch.log1p(torch.exp(-v))}[div]
    fstar = {"kl": lambda t: torch.exp(t - 1), "tv": lambda t: t, "pearson": lambda t: t * t / 4 + t,
             "js": lambda t: -torch.log(2 - torch.exp(t))}[div]
    expected = -gstar(pe).mean() + fstar(gstar(pf)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-7)


def test_rmu_formula(base, bench):
    f, r = batch_of(bench), batch_of(bench, "retain")
    st = _stage(base, bench, method="rmu", retain_weight=5.0, steer_coeff=3.0, rmu_layer=0)
    with torch.no_grad():
        for p in st.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    terms = st.method_params.terms(st, f, r)
    u = torch.rand(64, generator=torch.Generator().manual_seed(st.seed + 7919))
    target = 3.0 * u / u.norm()
    h = st.model(input_ids=f["input_ids"], attention_mask=f["attention_mask"], output_hidden_states=True).hidden_states[1]
    m = f["attention_mask"].bool()
    expected_f = ((h[m] - target) ** 2).mean()
    hr = st.model(input_ids=r["input_ids"], attention_mask=r["attention_mask"], output_hidden_states=True).hidden_states[1]
    h0 = st.reference_model(input_ids=r["input_ids"], attention_mask=r["attention_mask"], output_hidden_states=True).hidden_states[1]
    mr = r["attention_mask"].bool()
    expected_r = 5.0 * ((hr[mr] - h0[mr]) ** 2).mean()
    assert terms.forget.item() == pytest.approx(expected_f.item(), rel=1e-5)
    assert terms.retain.item() == pytest.approx(expected_r.item(), rel=1e-4, abs=1e-8)


@pytest.mark.parametrize("method", ["ga", "graddiff", "npo", "simnpo", "flat", "rmu", "dpo", "idkdpo", "wga"])
def test_padding_does_not_change_losses(base, bench, method):
    f, r = batch_of(bench), batch_of(bench, "retain")

    def pad(b, extra=7):
        out = {}
        for k, v in b.items():
            if v.ndim == 2:
                fill = -100 if k.endswith("labels") else 0
                out[k] = torch.cat([v, torch.full((v.shape[0], extra), fill, dtype=v.dtype)], 1)
            else:
                out[k] = v
        return out

    has_retain = "retain_weight" in METHODS.get(method).hyperparameter_names()
    st = _stage(base, bench, method=method, **({"retain_weight": 1.0} if has_retain else {}))
    with torch.no_grad():
        for p in st.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    a = st.method_params.terms(st, f, r)
    b = st.method_params.terms(st, pad(f), pad(r))
    assert a.total.item() == pytest.approx(b.total.item(), rel=1e-5, abs=1e-6)


# --------------------------------------------------------------------------- SAM, reference, mask
def test_sam_rho_zero_equals_plain_update(base, bench):
    f, r = batch_of(bench), batch_of(bench, "retain")
    models_ = [copy.deepcopy(base) for _ in range(2)]
    stages = [Unlearn(m, bench.split("forget"), bench.split("retain"), method="npo", retain_weight=1.0) for m in models_]
    opts = [torch.optim.AdamW(s.model.parameters(), lr=1e-3, weight_decay=0.01) for s in stages]
    for i, (s, opt) in enumerate(zip(stages, opts)):
        ffn = lambda s=s: s.method_params.forget_term(s, f)  # noqa: E731
        rfn = lambda s=s: s.method_params.retain_term(s, r)  # noqa: E731
        if i == 0:
            plain_backward(ffn, rfn)
        else:
            sam_backward(ffn, rfn, list(s.model.parameters()), rho=0.0)
    for p0, p1 in zip(stages[0].model.parameters(), stages[1].model.parameters()):
        assert torch.equal(p0.grad, p1.grad)
    for opt in opts:
        opt.step()
    assert same_state(state(stages[0].model), state(stages[1].model))


def test_sam_positive_rho_changes_grads_and_restores_weights(base, bench):
    f = batch_of(bench)
    st = _stage(base, bench, method="ga")
    before = state(st.model)
    ffn = lambda: st.method_params.forget_term(st, f)  # noqa: E731
    sam_backward(ffn, None, list(st.model.parameters()), rho=0.5)
    g_sam = [p.grad.clone() for p in st.model.parameters() if p.grad is not None]
    assert same_state(before, state(st.model))
    st.model.zero_grad()
    plain_backward(ffn)
    g_plain = [p.grad.clone() for p in st.model.parameters() if p.grad is not None]
    assert any(not torch.allclose(a, b) for a, b in zip(g_sam, g_plain))


def test_reference_model_never_changes(base, bench):
    st = make(base, bench, method="npo", sam_rho=0.05, mask_fraction=0.5, max_steps=3, lr=1e-2)
    ref0 = state(st.reference_model)
    assert not st.reference_model.training and not any(p.requires_grad for p in st.reference_model.parameters())
    st.run(progress=False)
    assert same_state(ref0, state(st.reference_model))
    assert not same_state(ref0, state(st.model))  # the model itself did move


def test_wagle_mask_blocks_adamw_weight_decay(base, bench):
    st = make(base, bench, method="graddiff", mask_fraction=0.05, weight_decay=0.5, lr=1e-2, max_steps=3)
    st.run(progress=False)
    wm = st.weight_mask
    assert wm is not None and wm.fraction == pytest.approx(0.05, abs=1e-3)
    assert wm.changed_outside() == 0
    moved = sum(int(((p.detach() != wm.frozen[n]) & wm.masks[n]).sum()) for n, p in wm.params.items())
    assert moved > 0


def test_probes_measure_after_the_mask_restored_the_weights(base, bench):
    from workbench.probes import Probe

    class MaskedMoved(Probe):  # attached at construction, i.e. before the mask exists (it is built at setup)
        def measure(self, run):
            return {"masked_moved": float(run.weight_mask.changed_outside())}

    st = make(base, bench, method="graddiff", mask_fraction=0.05, weight_decay=0.5, lr=1e-2, max_steps=3,
              probes=[MaskedMoved(every=1, at_start=False)])
    st.run(progress=False)
    assert st.record["masked_moved"].values.tolist() == [0.0, 0.0, 0.0]  # the mask (order -10) ran first
    names = [cb.name for cb in st.callbacks.attached("after_step")]
    assert names.index("WAGLE mask: restore masked weights") < names.index("MaskedMoved(every=1)")


def test_lora_unlearning_keeps_base_weights(base, bench):
    st = make(base, bench, method="npo", lora_rank=2, lr=1e-2, max_steps=2)
    base_before = {k: v.clone() for k, v in st.model.named_parameters() if "lora_" not in k}
    st.run(progress=False)
    for k, v in st.model.named_parameters():
        if "lora_" not in k:
            assert torch.equal(v, base_before[k]), k
    assert st.history.latest("loss") is not None


# --------------------------------------------------------------------------- evaluation
def test_forget_quality_of_oracle_against_itself_is_one(base, bench):
    assert forget_quality(base, bench, 0.1, oracle=base) == 1.0
    ds = evaluate(base, bench, 0.1, oracle=base, retain_limit=6, rouge=False)
    assert float(ds.forget_quality) == 1.0 and float(ds.kl_oracle_forget) == pytest.approx(0.0, abs=1e-9)
    tr = truth_ratio(base, bench, bench.forget_ids(0.1))
    assert tr.shape == (len(bench.forget_ids(0.1)),) and np.all(tr > 0)


def test_relearn_attack_reports_before_and_after(base, bench):
    ds = relearn_attack(base, bench, n_examples=2, steps=2, lr=1e-2, rouge=False)
    assert {"prob_attacked_before", "prob_attacked_after", "prob_heldout_after"} <= set(ds.data_vars)
    assert float(ds.prob_attacked_after) > float(ds.prob_attacked_before)
    with pytest.raises(ConfigError, match="n_examples"):
        relearn_attack(base, bench, n_examples=99)


def test_forget_sets_are_disjoint_replicates_of_the_same_benchmark(base, bench):
    frac = 0.2  # 10 entities: 2 per forget set, 5 disjoint sets
    sets = [bench.with_forget_set(k, frac) for k in range(5)]
    forget = [set(b.forget_ids(frac)) for b in sets]
    assert forget[0] == set(bench.forget_ids(frac)) and all(len(f) == 8 for f in forget)
    assert set().union(*forget) == set(bench.ids("all")) and sum(map(len, forget)) == len(bench.ids("all"))
    for b, f in zip(sets, forget):  # every other trained fact is retained; the holdout is untouched
        assert set(b.retain_ids(frac)) == set(bench.ids("all")) - f and b.holdout_ids() == bench.holdout_ids()
    assert bench.forget_order == sets[0].forget_order  # the original is not changed
    ds = relearn_attack(base, sets[3], forget_fraction=frac, n_examples=1, steps=1, rouge=False)
    assert ds.attrs["forget_fraction"] == frac
    for bad in (5, -1, 1.0, True):
        with pytest.raises(ConfigError, match="forget set index"):
            bench.with_forget_set(bad, frac)


# --------------------------------------------------------------------------- bad input
def test_bad_input_clear_errors_nothing_modified(base, bench):
    model = copy.deepcopy(base)
    before = state(model)
    forget, retain = bench.split("forget"), bench.split("retain")
    overlap = bench.split("all")
    with pytest.raises(ConfigError, match="overlap"):
        Unlearn(model, forget, overlap)
    with pytest.raises(ConfigError, match="empty"):
        Unlearn(model, {k: v[:0] for k, v in forget.tensors.items()}, retain)
    for beta in (0.0, -1.0, float("nan"), "abc"):
        with pytest.raises(ConfigError, match="beta="):
            Unlearn(model, forget, retain, method="npo", beta=beta)
    for mu in ("abc", float("nan"), 0.0):
        with pytest.raises(ConfigError, match="mu="):
            Unlearn(model, forget, retain, method="npo", mu=mu)
    with pytest.raises(ConfigError, match="neither a stage parameter nor a parameter of method 'ga'.*npo"):
        Unlearn(model, forget, retain, method="ga", beta=0.1)  # GA has no β: refused, with the methods that have one
    with pytest.raises(ConfigError, match="retain_weight"):
        Unlearn(model, forget, retain, method="graddiff", retain_weight=0.0)
    with pytest.raises(ConfigError, match="rank"):
        Unlearn(model, forget, retain, method="ga", lora_rank=10_000)  # the fine-tuning lab's check, before wrapping
    with pytest.raises(NotFoundError, match="Did you mean 'npo'"):
        Unlearn(model, forget, retain, method="nop")
    with pytest.raises(ConfigError, match="retain set"):
        Unlearn(model, forget, None, method="graddiff")
    with pytest.raises(ConfigError, match="oracle"):
        forget_quality(model, bench, 0.1, oracle=None)
    with pytest.raises(ConfigError, match="forget_fraction"):
        bench.split("forget", forget_fraction=1.5)
    assert same_state(before, state(model))
    assert type(model).__name__ == "GPT2LMHeadModel"  # not wrapped by the refused LoRA setting
    assert sorted(METHODS.names()) == ["dpo", "flat", "ga", "graddiff", "idkdpo", "npo", "rmu", "simnpo", "wga"]


def test_checkpoint_restores_reference_and_mask_and_resumes_identically(base, bench, tmp_path):
    a = make(base, bench, method="npo", mask_fraction=0.2, lr=1e-2, max_steps=4)
    a.run(2, progress=False)
    path = a.save_checkpoint(tmp_path / "u.pt")
    b = make(base, bench, method="npo", mask_fraction=0.2, lr=1e-2, max_steps=4)
    with torch.no_grad():  # b's own reference must be replaced by a's
        for p in b.reference_model.parameters():
            p.add_(1.0)
    b.load_checkpoint(path)
    assert same_state(state(a.reference_model), state(b.reference_model))
    assert all(torch.equal(a.weight_mask.masks[n], b.weight_mask.masks[n]) for n in a.weight_mask.masks)
    a.run(2, progress=False)
    b.run(2, progress=False)
    assert same_state(state(a.model), state(b.model))


def test_a_method_registered_later_is_usable(base, bench):
    from workbench.unlearn.losses import sequence_logprob
    from workbench.unlearn.methods import Method

    class HalfGA(Method):
        def forget_term(self, stage, forget):
            logp, _ = sequence_logprob(stage.model, forget)
            return 0.5 * logp.mean(), {}

    METHODS.register("half_ga_test", HalfGA, replace=True)
    try:
        st = make(base, bench, method="half_ga_test", max_steps=1)
        st.run(progress=False)
        ga = make(base, bench, method="ga")
        f = batch_of(bench)
        assert st.method_params.forget_term(ga, f)[0].item() == pytest.approx(0.5 * ga.method_params.forget_term(ga, f)[0].item())
    finally:
        METHODS._entries.pop("half_ga_test", None)
