"""Unlearning methods own their configuration (#11.5): parameters declared and validated on the method,
routed by the stage, π_ref copied only when used; and the DPO / IdkDPO / WGA formulas (#15.3)."""

from __future__ import annotations

import copy
import gc
import json
import math

import numpy as np
import param
import pytest
import torch
import torch.nn.functional as F

from workbench import models
from workbench.errors import ConfigError
from workbench.unlearn import METHODS, FactsBenchmark, Method, Unlearn, WithRetain


@pytest.fixture(scope="module")
def bench():
    return FactsBenchmark(n_entities=10, seed=0)


@pytest.fixture(scope="module")
def base():
    return models.build("gpt2-1m", n_layer=2, n_embd=64, n_head=2, seed=0)


def make(base, bench, **params):
    params.setdefault("batch_size", 4)
    params.setdefault("max_steps", 2)
    return Unlearn(copy.deepcopy(base), bench.split("forget"), bench.split("retain"), **params)


def batch_of(bench, n=4):
    return bench.split("forget").take(np.arange(n))


def ref_logp(model, batch, prefix=""):
    """Independent reference: per-sequence summed log-prob via F.cross_entropy (float64)."""
    out = model(input_ids=batch[f"{prefix}input_ids"], attention_mask=batch[f"{prefix}attention_mask"])
    logits = out.logits[:, :-1].double()
    labels = batch[f"{prefix}labels"][:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none",
                         ignore_index=-100).view(labels.shape)
    return -ce, labels != -100  # per-token log p [B, T-1] (0 off the answers), mask


def perturb(model, scale=0.02, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


# --------------------------------------------------------------------------- configuration
def test_stage_routes_keywords_to_the_method_object(base, bench):
    st = make(base, bench, method="simnpo", beta=0.3, delta=0.2, retain_weight=0.0)
    m = st.method_params
    assert isinstance(m, METHODS.get("simnpo")) and isinstance(m, param.Parameterized)
    assert (m.beta, m.delta, m.retain_weight) == (0.3, 0.2, 0.0)
    assert isinstance(Unlearn.param["method_params"], param.ClassSelector)  # a sub-parameterized a view can render
    assert st.config()["method_params"] == {"beta": 0.3, "delta": 0.2, "retain_weight": 0.0}
    assert json.loads(st.record.attrs["config"])["method_params"]["beta"] == 0.3
    assert make(base, bench, method="npo", method_params={"beta": 0.7}).method_params.beta == 0.7
    obj = METHODS.get("npo").checked(beta=2.0)
    assert make(base, bench, method="npo", method_params=obj).method_params is obj
    with pytest.raises(ConfigError, match="not both"):
        make(base, bench, method="npo", method_params=obj, beta=1.0)
    with pytest.raises(ConfigError, match="NPO but method='ga'"):
        make(base, bench, method="ga", method_params=obj)
    st.method = "wga"  # a new method name: a fresh object with that method's defaults
    assert type(st.method_params).__name__ == "WGA" and st.method_params.beta == 1.0


@pytest.mark.parametrize("bad", [dict(method="npo", beta=float("nan")), dict(method="npo", beta="abc"),
                                 dict(method="simnpo", beta=-1.0), dict(method="rmu", rmu_layer=1.5),
                                 dict(method="flat", f_divergence="kl2"), dict(method="wga", beta=float("inf")),
                                 dict(mu="abc"), dict(mu=float("nan")), dict(sam_rho=-0.1)])
def test_bad_parameters_are_refused_before_anything_is_built(base, bench, bad):
    model = copy.deepcopy(base)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k in bad if k != "method")
    with pytest.raises(ConfigError, match=f"{name}=") as err:
        Unlearn(model, bench.split("forget"), bench.split("retain"), **bad)
    assert "Pass" in str(err.value) or "use one of" in str(err.value)  # says how to fix it
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_live_edits_are_checked_at_setup(base, bench):
    st = make(base, bench, method="npo")
    with pytest.raises(ValueError):  # param's own check refuses NaN when set
        st.method_params.beta = float("nan")
    st.method = "graddiff"
    st.method_params.retain_weight = 0.5
    st.step()
    st.retain = None  # GradDiff needs one: refused at the next setup, before the step
    with pytest.raises(ConfigError, match="retain set"):
        st.step()


def test_no_reference_copy_for_methods_that_do_not_use_it(base, bench):
    def n_models():
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o).__name__ == "GPT2LMHeadModel")

    for name in ("ga", "graddiff", "simnpo", "flat", "wga"):
        before = n_models()
        st = make(base, bench, method=name)
        assert not METHODS.get(name).needs_reference
        assert st.reference_model is None and st.reference_bytes == 0
        assert n_models() == before + 1  # the trained model only: no π_ref copy
        st.step()  # and it trains without one
        del st
    for name in ("npo", "rmu", "dpo", "idkdpo"):
        before = n_models()
        st = make(base, bench, method=name)
        assert n_models() == before + 2
        size = sum(t.numel() * t.element_size() for t in st.model.state_dict().values())
        assert st.reference_bytes == size > 0
        del st


def test_reference_made_lazily_only_before_the_first_step(base, bench):
    st = make(base, bench, method="ga")
    st.method = "npo"
    st.step()  # step 0: π_ref = the model before unlearning
    assert st.reference_model is not None
    late = make(base, bench, method="ga")
    late.step()
    late.method = "dpo"
    with pytest.raises(ConfigError, match="needs π_ref"):
        late.step()


def test_a_method_with_a_hyperparameter_is_one_class(base, bench):
    from workbench.unlearn.losses import sequence_logprob

    class ScaledGA(WithRetain):
        gamma = param.Number(default=1.0, bounds=(0, None), doc="Scale of the ascent.")

        def forget_term(self, stage, forget):
            logp, _ = sequence_logprob(stage.model, forget)
            return self.gamma * logp.mean(), {}

    METHODS.register("scaled_ga_test", ScaledGA, replace=True)
    try:
        st = make(base, bench, method="scaled_ga_test", gamma=0.25, retain_weight=0.0)
        assert st.method_params.gamma == 0.25 and st.config()["method_params"] == {"retain_weight": 0.0, "gamma": 0.25}
        st.run(progress=False)
        with pytest.raises(ConfigError, match="gamma="):
            make(base, bench, method="scaled_ga_test", gamma=-1)
    finally:
        METHODS._entries.pop("scaled_ga_test", None)


# --------------------------------------------------------------------------- new methods vs their formulas
@pytest.mark.parametrize("name,chosen", [("dpo", "alternate_"), ("idkdpo", "refusal_")])
def test_dpo_family_at_reference_is_2_over_beta_ln2(base, bench, name, chosen):
    f = batch_of(bench)
    for beta in (0.1, 1.0, 5.0):
        st = make(base, bench, method=name, beta=beta, retain_weight=0.0)
        loss, _ = st.method_params.forget_term(st, f)
        assert loss.item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    perturb(st.model)  # away from θ_ref: against an independent computation
    loss, _ = st.method_params.forget_term(st, f)
    (w, mw), (lo, ml) = ref_logp(st.model, f, chosen), ref_logp(st.model, f)
    (rw, _), (rl, _) = ref_logp(st.reference_model, f, chosen), ref_logp(st.reference_model, f)
    margin = (w.sum(-1) - rw.sum(-1)) - (lo.sum(-1) - rl.sum(-1))
    expected = -(2 / 5.0) * F.logsigmoid(5.0 * margin).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)  # float32 sums of ~10 log-probs vs float64
    assert not torch.equal(f[f"{chosen}input_ids"], f["input_ids"])  # the preferred answer really differs


def test_dpo_prefers_the_alternate_and_idkdpo_the_refusal(bench):
    t = bench.split("forget").tensors
    fact = bench.facts[int(t["fact_id"][0])]
    decode = lambda ids: bench.tokenizer.decode(ids[ids != -100][:-1].tolist()).strip()  # noqa: E731
    assert decode(t["alternate_labels"][0]) == fact.alternate != fact.answer
    assert decode(t["refusal_labels"][0]) == fact.refusal
    assert fact.alternate.split()[:-1] == fact.answer.split()[:-1]  # same template, another value


def test_wga_formula_and_gradient(base, bench):
    f = batch_of(bench)
    st = make(base, bench, method="wga", beta=0.0, retain_weight=0.0)
    perturb(st.model)
    loss, _ = st.method_params.forget_term(st, f)
    lp, mask = ref_logp(st.model, f)
    assert loss.item() == pytest.approx((lp.sum() / mask.sum()).item(), rel=1e-6)  # β = 0: −NLL_forget
    st.method_params.beta = 2.0
    params = list(st.model.parameters())
    loss, _ = st.method_params.forget_term(st, f)
    g = torch.autograd.grad(loss, params, allow_unused=True)
    lp, mask = ref_logp(st.model, f)
    w = lp.detach().exp() ** 2.0 * mask
    expected = (w * lp).sum() / mask.sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    g_ref = torch.autograd.grad(expected, params, allow_unused=True, retain_graph=True)  # weights detached: sg(p^β)
    g_undetached = torch.autograd.grad(((lp.exp() ** 2.0 * mask) * lp).sum() / mask.sum(), params, allow_unused=True)
    for a, b, c in zip(g, g_ref, g_undetached):
        if a is not None:
            torch.testing.assert_close(a.double(), b.double(), rtol=1e-4, atol=1e-7)
    assert any(a is not None and not torch.allclose(a.double(), c.double(), rtol=1e-3, atol=1e-6)
               for a, c in zip(g, g_undetached))


@pytest.mark.parametrize("name", ["dpo", "idkdpo", "wga"])
def test_new_methods_unlearn(base, bench, name):
    st = make(base, bench, method=name, lr=1e-2, max_steps=4, retain_weight=0.0)  # (shared templates: a retain
    # term on this untrained model raises the forget answers too, and WGA's weights p^β are tiny here)
    f = batch_of(bench)
    with torch.no_grad():
        before = ref_logp(st.model, f)[0].sum().item()
    st.run(progress=False)
    with torch.no_grad():
        after = ref_logp(st.model, f)[0].sum().item()
    assert after < before  # the forget answers became less likely
    assert METHODS.get(name)().retain_weight == 1.0 and "retain_loss" not in st.record
