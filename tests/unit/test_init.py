"""Init recipes: registry, low-rank at equal norm, task alignment, all-or-nothing apply, preview, vocab expansion."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from workbench import data, models
from workbench.errors import ConfigError, NotFoundError
from workbench.init import RECIPES, apply, plan, preview
from workbench.init.vocab import EMBEDDING_INITS, expand_vocabulary
from workbench.matrices import weight_matrices


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_registry_lists_recipes_with_params():
    rows = {r["name"]: r for r in RECIPES.table()}
    assert {"scale", "low_rank", "aligned", "orthogonal", "gaussian"} <= set(rows)
    assert "rank=1" in rows["low_rank"]["params"] and rows["aligned"]["needs_data"] is True
    assert "factor" in RECIPES.get("scale").param  # a param.Parameterized class a panel can show


@pytest.mark.parametrize("rank", [1, 5, 32])
def test_low_rank_keeps_frobenius_norm_and_has_rank(rank):
    net = models.rnn(n_hidden=32, seed=1)
    before = net.weight_rec.detach().clone()
    assert apply(net, "low_rank", rank=rank, include="^weight_rec$") == ["weight_rec"]
    w = net.weight_rec.detach()
    assert torch.linalg.matrix_rank(w).item() == rank
    torch.testing.assert_close(w.norm(), before.norm(), rtol=1e-5, atol=0)
    assert torch.equal(net.weight_in, models.rnn(n_hidden=32, seed=1).weight_in)  # unselected: untouched


def test_low_rank_on_gpt2_conv1d_uses_out_in_orientation():
    model = models.build("gpt2-1m", n_layer=1)
    name = "transformer.h.0.mlp.c_fc.weight"
    before = weight_matrices(model)[name].clone()
    apply(model, "low_rank", rank=3, include=r"h\.0\.mlp\.c_fc")
    after = weight_matrices(model)[name]
    assert after.shape == before.shape and torch.linalg.matrix_rank(after).item() == 3
    torch.testing.assert_close(after.norm(), before.norm(), rtol=1e-5, atol=0)
    # the same as truncating the [out, in] matrix ourselves
    u, s, vh = torch.linalg.svd(before, full_matrices=False)
    trunc = (u[:, :3] * s[:3]) @ vh[:3]
    torch.testing.assert_close(after, trunc * before.norm() / trunc.norm(), rtol=1e-4, atol=1e-5)


def test_scale_gaussian_orthogonal_and_rng_untouched():
    net = models.rnn(n_hidden=64, seed=0)
    w0 = net.weight_rec.detach().clone()
    apply(net, "scale", factor=0.5, include="weight_rec")
    torch.testing.assert_close(net.weight_rec.detach(), 0.5 * w0)
    rng = torch.get_rng_state()
    apply(net, "gaussian", gain=2.0, include="weight_rec", seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # the recipe's own generator
    assert abs(net.weight_rec.std().item() - 2.0 / 8.0) < 0.02
    first = net.weight_rec.detach().clone()
    apply(net, "gaussian", gain=2.0, include="weight_rec", seed=3)
    assert torch.equal(net.weight_rec.detach(), first)  # reproducible
    apply(net, "orthogonal", gain=1.5, include="weight_rec")
    q = net.weight_rec.detach()
    torch.testing.assert_close(q.T @ q, 2.25 * torch.eye(64), atol=1e-4, rtol=0)


def test_aligned_gradient_init_follows_the_task_gradient():
    ds = data.load("teacher_student", d_in=8, d_out=1, n_train=128, n_val=16)
    net = models.mlp(d_in=8, d_hidden=16, d_out=1, depth=2)
    name = "net.2.weight"  # the [16, 16] hidden matrix
    w = net.net[2].weight.detach().clone()
    batch = ds.train.batch_at(0, 128, 0)
    loss, _ = ds.loss(net, batch)
    g = -torch.autograd.grad(loss, net.net[2].weight)[0]
    new = plan(net, "aligned", data=ds, include=r"^net\.2\.weight$", rank=2, n_examples=128)[name]
    assert torch.linalg.matrix_rank(new).item() == 2
    torch.testing.assert_close(new.norm(), w.norm(), rtol=1e-5, atol=0)
    u_new = torch.linalg.svd(new)[0][:, :2]
    u_g = torch.linalg.svd(g)[0][:, :2]
    assert torch.linalg.svdvals(u_new.T @ u_g).min() > 0.999  # same top-2 left subspace as −∇L
    # alignment = 0 is the plain low-rank init
    torch.testing.assert_close(plan(net, "aligned", data=ds, include=r"^net\.2\.weight$", rank=2, alignment=0.0)[name],
                               plan(net, "low_rank", include=r"^net\.2\.weight$", rank=2)[name], rtol=1e-4, atol=1e-5)
    assert torch.equal(net.net[2].weight.detach(), w)  # plan never modifies


def test_aligned_cross_covariance_on_input_output_matrix():
    ds = data.load("teacher_student", d_in=6, d_out=1, n_train=256, n_val=8)
    lin = torch.nn.Linear(6, 1)
    new = plan(lin, "aligned", data=ds, statistic="cross_covariance", include="weight")["weight"]
    x, y = ds.train.tensors["x"][:256], ds.train.tensors["y"][:256]
    cov = (y.T @ x) / 256
    cos = (new.flatten() @ cov.flatten()) / (new.norm() * cov.norm())
    assert cos > 0.9999
    with pytest.raises(ConfigError, match="cross-covariance"):
        plan(models.mlp(d_in=6, d_out=1), "aligned", data=ds, statistic="cross_covariance", include=r"net\.2")


@pytest.mark.parametrize("call, match", [
    (lambda m: apply(m, "low_rank", rank=0, include="weight_rec"), "rank"),
    (lambda m: apply(m, "low_rank", rank=17, include="weight_rec"), "min\\(out, in\\) = 16"),
    (lambda m: apply(m, "low_rank", rank=2, include="nothing_matches"), "matches no weight matrix"),
    (lambda m: apply(m, "scale", factor=2.0, include="[unclosed"), "regular expression"),
    (lambda m: apply(m, "scale", fator=2.0), "Unknown parameter"),
    (lambda m: apply(m, "aligned", include="weight_rec"), "needs the task"),
    (lambda m: apply(m, "low_rank", rank=20), "min\\(out, in\\)"),  # all matrices: weight_in is [16, 3]
])
def test_bad_input_leaves_model_untouched(call, match):
    net = models.rnn(n_hidden=16)
    before = state(net)
    with pytest.raises((ConfigError, NotFoundError), match=match):
        call(net)
    assert same(before, state(net))


def test_unknown_recipe_lists_known_ones():
    net = models.rnn(n_hidden=8)
    with pytest.raises(NotFoundError, match="low_rank"):
        apply(net, "low_rnk", rank=1)


def test_preview_spectrum_and_effective_rank_without_modifying():
    net = models.rnn(n_hidden=24)
    before = state(net)
    ds = preview(net, "low_rank", rank=4, include="weight_rec")
    assert same(before, state(net))
    assert ds.singular_values_after.dims == ("matrix", "index") and list(ds.matrix.values) == ["weight_rec"]
    assert int(ds.numerical_rank_after.item()) == 4 and int(ds.numerical_rank_before.item()) == 24
    assert float(ds.effective_rank_after.item()) <= 4 + 1e-6 < float(ds.effective_rank_before.item())
    np.testing.assert_allclose(ds.frobenius_norm_after.values, ds.frobenius_norm_before.values, rtol=1e-6)  # fp32 sums
    single = preview(torch.randn(10, 6), "orthogonal")
    assert single.singular_values_after.shape == (1, 6)


@pytest.fixture(scope="module")
def tokenizer():
    return data.get_tokenizer(512)


@pytest.mark.parametrize("preset", ["gpt2-1m", "llama-1m"])
@pytest.mark.parametrize("init", EMBEDDING_INITS)
def test_vocab_expansion(tokenizer, preset, init):
    tok = copy.deepcopy(tokenizer)  # the shared cached tokenizer must stay as it is
    layers = {"n_layer": 1} if preset.startswith("gpt2") else {"num_hidden_layers": 1}  # each config's own name
    model = models.build(preset, vocab_size=len(tok), **layers)
    emb_old = model.get_input_embeddings().weight.detach().clone()
    out_old = model.get_output_embeddings().weight.detach().clone()
    ids = expand_vocabulary(model, tok, ["<tool>", "</tool>", "<sep2>"], init=init, seed=1)
    assert ids == [len(tokenizer), len(tokenizer) + 1, len(tokenizer) + 2] and len(tok) == len(tokenizer) + 3
    emb = model.get_input_embeddings().weight.detach()
    assert emb.shape[0] == len(tok) and model.get_output_embeddings().weight.shape[0] == len(tok)
    torch.testing.assert_close(emb[: len(tokenizer)], emb_old)
    new = emb[ids]
    if init == "zero":
        assert torch.count_nonzero(new) == 0
    elif init == "mean":
        torch.testing.assert_close(new, emb_old.mean(0).expand_as(new))
    elif init == "multivariate_normal":
        assert (new - emb_old.mean(0)).norm(dim=1).max() < (emb_old - emb_old.mean(0)).norm(dim=1).mean()
    else:  # convex: every coordinate within the existing rows' range (a necessary condition)
        assert (new >= emb_old.min(0).values - 1e-6).all() and (new <= emb_old.max(0).values + 1e-6).all()
    if preset == "llama-1m":  # untied lm_head gets its own rows from its own statistics
        head = model.get_output_embeddings().weight.detach()
        torch.testing.assert_close(head[: len(tokenizer)], out_old)
        if init == "mean":
            torch.testing.assert_close(head[ids], out_old.mean(0).expand(3, -1))
    logits = model(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, 3, len(tok))


def test_vocab_bad_input_changes_nothing(tokenizer):
    tok = copy.deepcopy(tokenizer)
    model = models.build("gpt2-1m", vocab_size=len(tok), n_layer=1)
    before, n = state(model), len(tok)
    existing = tok.convert_ids_to_tokens(5)
    for kwargs, match in [(dict(tokens=["<a>"], init="uniform"), "Unknown embedding init"),
                          (dict(tokens=[existing]), "already in the tokenizer"),
                          (dict(tokens=[]), "non-empty list"), (dict(tokens="<a>"), "non-empty list"),
                          (dict(tokens=["<a>", "<a>"]), "duplicates"),
                          (dict(tokens=["<a>"], init="convex", k=0), "k must be")]:
        with pytest.raises((ConfigError, NotFoundError), match=match):
            expand_vocabulary(model, tok, **kwargs)
        assert len(tok) == n and same(before, state(model))
