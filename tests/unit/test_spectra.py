"""Spectral engine: exact values on constructed matrices, planted intruders, agreement with numpy,
PEFT and WeightWatcher, Conv1D ≡ Linear, bf16 upcast, the live probe, and clear errors on bad input."""

from __future__ import annotations

import contextlib
import copy
import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

from workbench import Run, Snapshot, data, models
from workbench.errors import ConfigError
from workbench.matrices import weight_matrices
from workbench.spectra import (BaseVectors, SpectraProbe, compare, effective_rank, find_intruders, fit_power_law,
                               intruder_component, intruder_dimensions, intruder_profile, model_spectra, numerical_rank,
                               power_law_alpha, principal_angles, singular_values, stable_rank)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny SVDs gain nothing from threads, and on the shared 2-core machine OpenMP spin-waits made them 100× slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only speeds up numpy's reference SVDs
        threadpool_limits = contextlib.nullcontext
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):  # numpy's BLAS/LAPACK (the reference SVDs) likewise
        yield
    torch.set_num_threads(n)


def orthogonal(n: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]


def with_spectrum(sv, m: int, n: int, seed: int = 0) -> torch.Tensor:
    """An m×n fp32 matrix with singular values ``sv`` and random singular vectors."""
    u, v = orthogonal(m, seed)[:, : len(sv)], orthogonal(n, seed + 1)[:, : len(sv)]
    return (u @ torch.diag(torch.as_tensor(sv, dtype=torch.float64)) @ v.T).float()


# ---------------------------------------------------------------------------------------------- exact values
@pytest.mark.parametrize("n", [1, 5, 32])
def test_identity(n):
    eye = torch.eye(n)
    assert effective_rank(eye) == pytest.approx(n, rel=1e-9)
    assert stable_rank(eye) == pytest.approx(n, rel=1e-6)
    assert numerical_rank(eye) == n


def test_rank_one():
    w = torch.outer(torch.arange(1.0, 9.0), torch.linspace(-1, 2, 6))  # [8, 6]
    assert effective_rank(w) == pytest.approx(1.0, abs=1e-9)
    assert stable_rank(w) == pytest.approx(1.0, rel=1e-6)
    assert numerical_rank(w) == 1


def test_diagonal_spectra():
    sv = np.array([4.0, 2.0, 1.0, 1.0])
    p = sv / sv.sum()
    expected_erank = math.exp(-(p * np.log(p)).sum())
    for w in (torch.diag(torch.tensor(sv, dtype=torch.float32)), with_spectrum(sv, 12, 7)):
        assert effective_rank(w) == pytest.approx(expected_erank, rel=1e-5)
        assert stable_rank(w) == pytest.approx((sv ** 2).sum() / 16.0, rel=1e-5)
        assert numerical_rank(w) == 4
        assert singular_values(w)[:4].double().numpy() == pytest.approx(sv, rel=1e-5)


def test_zero_matrix_is_rank_zero():
    z = torch.zeros(4, 3)
    assert effective_rank(z) == 0.0 and stable_rank(z) == 0.0 and numerical_rank(z) == 0


def test_half_precision_is_upcast():
    w = with_spectrum([3.0, 2.0, 0.5, 0.25], 16, 8).to(torch.bfloat16)
    assert singular_values(w).dtype == torch.float32
    assert effective_rank(w) == effective_rank(w.float())
    assert stable_rank(w.half()) == pytest.approx(stable_rank(w.half().float()))
    base = with_spectrum(np.linspace(2, 0.1, 16), 16, 16)
    assert find_intruders(base.bfloat16(), base.bfloat16()).count == 0


def test_power_law_fit_recovers_pareto_exponent():
    rng = np.random.default_rng(1)
    for alpha in (2.0, 3.5):
        lam = (1 - rng.random(5000)) ** (-1 / (alpha - 1))
        assert fit_power_law(lam).alpha == pytest.approx(alpha, abs=0.1)
    assert math.isnan(fit_power_law([1.0, 2.0]).alpha)  # too few eigenvalues


# ---------------------------------------------------------------------------------------------- intruders
def _base(m=128, n=96, seed=0):
    return with_spectrum(np.linspace(3.0, 0.05, min(m, n)), m, n, seed)


def test_planted_rank_one_intruder_is_found():
    w0 = _base()
    u0 = torch.linalg.svd(w0, full_matrices=False)[0]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(128, generator=g)
    x -= u0[:, :10] @ (u0[:, :10].T @ x)  # orthogonal to the base's top vectors
    y = torch.randn(96, generator=g)
    w = w0 + 8.0 * torch.outer(x / x.norm(), y / y.norm())
    res = find_intruders(w0, w, k=10, eps=0.5)
    assert (res.count, res.indices) == (1, [0])
    assert res.max_cos[0] < 0.5 and (res.max_cos[1:] > 0.5).all()
    assert intruder_dimensions(w0, w) == 1
    # the intruder component is the rank-1 piece along the planted direction
    comp = intruder_component(res)
    assert torch.linalg.matrix_rank(comp) == 1
    assert abs(float(torch.nn.functional.cosine_similarity(comp @ (y / y.norm()), x, dim=0))) > 0.95
    # the randomized top-k finds the same
    assert find_intruders(w0, w, method="lowrank").indices == [0]


@pytest.mark.parametrize("change", ["copy", "rescale", "negate", "flip_vector_signs", "tiny_noise"])
def test_no_intruders_without_new_directions(change):
    w0 = _base()
    u, s, vh = torch.linalg.svd(w0, full_matrices=False)
    signs = torch.where(torch.arange(len(s)) % 2 == 0, 1.0, -1.0)
    w = {"copy": w0.clone(), "rescale": 3.7 * w0, "negate": -w0,
         "flip_vector_signs": (u * signs) @ torch.diag(s) @ vh,  # flips u_j for odd j: a different matrix, same |cos|
         "tiny_noise": w0 + 1e-4 * torch.randn(w0.shape, generator=torch.Generator().manual_seed(3))}[change]
    res = find_intruders(w0, w)
    assert res.count == 0 and res.max_cos.min() > 0.99


def test_intruders_match_peft_reference_implementation():
    """Counts equal PEFT's reduce_intruder_dimension (paper's algorithm) on a LoRA Llama (nn.Linear) model."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.intruders import reduce_intruder_dimension

    base = models.build("llama-1m", seed=0)
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    g = torch.Generator().manual_seed(0)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # a trained-looking adapter: a strong update in some layers, tiny in others
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if "layers.0." in name else 1e-4))
    ours = intruder_dimensions(base, peft_model)
    messages = []
    reduce_intruder_dimension(peft_model, logging_sink=messages.append)
    theirs = {}
    for msg in messages:
        if ": " in msg and "Intruders" in msg or "No intruders" in msg:
            layer, rest = msg.split(": ", 1)
            theirs[layer.replace("base_model.model.", "") + ".weight"] = 0 if rest == "No intruders" else int(rest.split()[-1])
    assert theirs and sum(theirs.values()) > 0
    for name, count in theirs.items():
        assert int(ours.sel(matrix=name)) == count, name


# ---------------------------------------------------------------------------------------------- whole models
@pytest.fixture(scope="module")
def gpt2():
    return models.build("gpt2-1m", seed=0)


def test_model_spectra_agrees_with_numpy(gpt2):
    ds = model_spectra(gpt2)
    mats = weight_matrices(gpt2)
    assert list(ds.matrix.values) == list(mats)
    for name, w in mats.items():
        ref = np.linalg.svd(w.double().numpy(), compute_uv=False)
        got = ds.singular_values.sel(matrix=name).values[: len(ref)]
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * ref[0])
        assert np.isnan(ds.singular_values.sel(matrix=name).values[len(ref):]).all()
        p = ref / ref.sum()
        assert float(ds.effective_rank.sel(matrix=name)) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-5)
        assert float(ds.stable_rank.sel(matrix=name)) == pytest.approx((ref ** 2).sum() / ref[0] ** 2, rel=1e-5)
        assert int(ds.numerical_rank.sel(matrix=name)) == np.linalg.matrix_rank(w.double().numpy())
        assert float(ds.frobenius_norm.sel(matrix=name)) == pytest.approx(np.linalg.norm(ref), rel=1e-5)
    assert (ds.rows.values == [w.shape[0] for w in mats.values()]).all()


def test_top_k_mode_is_accurate(gpt2):
    full = model_spectra(gpt2, embeddings=False)
    top = model_spectra(gpt2, embeddings=False, top_k=16)
    rel = np.abs(top.singular_values.values[:, :16] - full.singular_values.values[:, :16]) / full.singular_values.values[:, :16]
    assert rel.max() < 1e-2
    np.testing.assert_allclose(top.stable_rank, full.stable_rank, rtol=1e-2)
    assert np.isnan(top.effective_rank).all()


def _conv1d_and_linear():
    from transformers.pytorch_utils import Conv1D

    g = torch.Generator().manual_seed(0)
    w = torch.randn(48, 80, generator=g)  # [out, in]
    conv, lin = Conv1D(48, 80), nn.Linear(80, 48)  # Conv1D(nf=out, nx=in) stores [in, out]
    with torch.no_grad():
        conv.weight.copy_(w.T)
        lin.weight.copy_(w)
    return nn.ModuleDict({"proj": conv}), nn.ModuleDict({"proj": lin})


def test_conv1d_and_linear_give_identical_results():
    conv, lin = _conv1d_and_linear()
    a, b = model_spectra(conv), model_spectra(lin)
    for var in ("singular_values", "effective_rank", "stable_rank", "alpha"):
        np.testing.assert_array_equal(a[var].values, b[var].values)
    assert (int(a.rows[0]), int(a.cols[0])) == (48, 80)
    conv2, lin2 = copy.deepcopy(conv), copy.deepcopy(lin)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(48, generator=g), torch.randn(80, generator=g)
    with torch.no_grad():  # the same update in [out, in] terms
        conv2["proj"].weight.add_(30 * torch.outer(x / x.norm(), y / y.norm()).T)
        lin2["proj"].weight.add_(30 * torch.outer(x / x.norm(), y / y.norm()))
    ca, cl = compare(conv, conv2), compare(lin, lin2)
    np.testing.assert_array_equal(ca.max_cos.values, cl.max_cos.values)
    assert int(ca.intruders[0]) == int(cl.intruders[0]) == 1


def test_peft_lora_model_is_analysed_through_effective_weights(gpt2):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(copy.deepcopy(gpt2), LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"],
                                                                fan_in_fan_out=True))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            with torch.no_grad():
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
    merged = copy.deepcopy(peft_model).merge_and_unload()
    a, b = model_spectra(peft_model, embeddings=False), model_spectra(merged, embeddings=False)
    assert list(a.matrix.values) == list(b.matrix.values) == list(model_spectra(gpt2, embeddings=False).matrix.values)
    np.testing.assert_allclose(a.singular_values, b.singular_values, rtol=1e-4, atol=1e-6)
    counts = intruder_dimensions(gpt2, peft_model)
    assert int(counts.sel(matrix="transformer.h.0.attn.c_attn.weight")) > 0
    assert int(counts.sel(matrix="transformer.h.0.mlp.c_fc.weight")) == 0  # not adapted


def test_compare_and_principal_angles(gpt2):
    q = orthogonal(20, 0)
    angles = principal_angles(q[:, :3], torch.cat([q[:, :2], q[:, [5]]], 1))
    np.testing.assert_allclose(angles.numpy(), [0, 0, math.pi / 2], atol=1e-6)
    from scipy.linalg import subspace_angles

    g = torch.Generator().manual_seed(4)
    a = torch.linalg.qr(torch.randn(40, 6, generator=g))[0]
    b = torch.linalg.qr(a + 0.01 * torch.randn(40, 6, generator=g))[0]  # small angles: the sine branch
    c = torch.linalg.qr(torch.randn(40, 6, generator=g))[0]  # large ones: the cosine branch
    for other in (b, c):
        np.testing.assert_allclose(principal_angles(a, other).numpy(),
                                   np.sort(subspace_angles(a.double().numpy(), other.double().numpy())), atol=1e-5)
    other = models.build("gpt2-1m", seed=1)
    ds = compare(gpt2, gpt2, k=5)
    assert int(ds.intruders.sum()) == 0 and float(ds.subspace_overlap.min()) > 0.999
    assert float(np.nanmax(np.abs(ds.delta_singular_values))) == 0.0
    ds2 = compare(gpt2, other, k=5, embeddings=False)
    assert float(ds2.subspace_overlap.max()) < 0.5  # independent random inits share no top subspace
    assert ds2.max_cos.sizes["rank"] == 5 and ds2.principal_angles.attrs["units"] == "rad"
    # σ(W), σ(W0) and their shift against spectra known by construction (not recomputed from the code's own σ)
    sv0, sv1 = np.linspace(5.0, 1.0, 12), np.r_[np.linspace(9.0, 2.0, 6), np.linspace(0.9, 0.4, 6)]
    ds3 = compare({"w": with_spectrum(sv0, 30, 12, seed=3)}, {"w": with_spectrum(sv1, 30, 12, seed=7)}, k=3)
    np.testing.assert_allclose(ds3.singular_values_init.sel(matrix="w"), sv0, rtol=1e-5)
    np.testing.assert_allclose(ds3.singular_values.sel(matrix="w"), sv1, rtol=1e-5)
    np.testing.assert_allclose(ds3.singular_value_shift.sel(matrix="w"), sv1 - sv0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- probe
def test_probe_records_into_run_and_caches_base_vectors():
    stories = data.load("stories", n_docs=300)
    probe = SpectraProbe(every=3, singular_values=True)
    run = Run("gpt2-1m", stories, probes=[probe], batch_size=4, eval_every=0, max_steps=6)
    run.run(6, progress=False)
    rec = run.record
    n = len(weight_matrices(run.model))
    assert rec.effective_rank.dims == ("step", "matrix") and rec.sizes["matrix"] == n
    assert rec.singular_values.dims == ("step", "matrix", "index")
    measured = rec.intruders.dropna("step", how="all").step.values.tolist()
    assert measured == [0, 3, 6]
    assert float(rec.intruders.sel(step=0).sum()) == 0.0  # W0 against itself
    assert probe.base_vectors.computed == n  # once, not per measurement
    # the logged numbers are model_spectra's and the intruder counts the one-off function's
    ds = model_spectra(run.model)
    np.testing.assert_allclose(rec.effective_rank.sel(step=6), ds.effective_rank, rtol=1e-5)
    np.testing.assert_allclose(rec.intruders.sel(step=6), intruder_dimensions(run.reference, run.model))
    # a new reference invalidates the cache
    run.reference = Snapshot.from_model(run.model)
    probe.record(run)
    assert probe.base_vectors.computed == 2 * n and float(run.history.latest("intruders").sum()) == 0.0


def test_base_vector_cache_and_lowrank_method(gpt2):
    ref = Snapshot.from_model(gpt2)
    cache = BaseVectors()
    cache.get(ref), cache.get(ref)
    assert cache.computed == len(ref)
    np.testing.assert_array_equal(model_spectra(ref).singular_values, model_spectra(gpt2).singular_values)
    # randomized top-k tuned vectors give the exact counts on a base with a decaying (trained-like) top spectrum
    g = torch.Generator().manual_seed(7)
    base, tuned = {}, {}
    for i in range(6):
        w0 = with_spectrum(np.r_[np.linspace(6, 2, 16), np.full(80, 0.5)], 160, 96, seed=10 * i)
        x, y = torch.randn(160, i % 3, generator=g), torch.randn(i % 3, 96, generator=g)
        base[f"m{i}"] = w0
        tuned[f"m{i}"] = w0 + 12.0 * (x / x.norm(dim=0)) @ (y / y.norm(dim=1, keepdim=True)) + 1e-3 * torch.randn(160, 96, generator=g)
    exact = intruder_profile(base, tuned, method="exact")
    fast = intruder_profile(base, tuned, method="lowrank", cache=BaseVectors())
    np.testing.assert_array_equal(exact.intruders, fast.intruders)
    assert exact.intruders.values.tolist() == [0, 1, 2, 0, 1, 2]
    np.testing.assert_allclose(exact.max_cos, fast.max_cos, atol=1e-3)


# ---------------------------------------------------------------------------------------------- WeightWatcher
def test_alpha_and_stable_rank_match_weightwatcher():
    ww = pytest.importorskip("weightwatcher")
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(120, 160), nn.ReLU(), nn.Linear(160, 90))
    with torch.no_grad():  # heavy-tailed entries, so the tail fit is meaningful
        for layer in (mlp[0], mlp[2]):
            layer.weight.copy_(torch.distributions.StudentT(3.0).sample(layer.weight.shape) * 0.05)
    df = ww.WeightWatcher(model=mlp, log_level=logging.ERROR).analyze()
    ds = model_spectra(mlp)
    for (_, row), name in zip(df.iterrows(), ["0.weight", "2.weight"]):
        assert float(ds.alpha.sel(matrix=name)) == pytest.approx(row["alpha"], rel=1e-4)
        assert float(ds.alpha_xmin.sel(matrix=name)) == pytest.approx(row["xmin"], rel=1e-4)
        assert float(ds.stable_rank.sel(matrix=name)) == pytest.approx(row["stable_rank"], rel=1e-4)
        # WeightWatcher's "spectral_norm" is λ_max = σ_max²; ours is σ_max
        assert float(ds.spectral_norm.sel(matrix=name)) ** 2 == pytest.approx(row["spectral_norm"], rel=1e-4)
        assert power_law_alpha(dict(mlp.named_parameters())[name]) == pytest.approx(row["alpha"], rel=1e-4)


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [torch.zeros(3), torch.zeros(2, 3, 4), torch.zeros(0, 3), "abc", nn.Linear(2, 2)])
def test_non_matrix_input_is_rejected(bad):
    with pytest.raises(ConfigError, match="2-D|empty|tensor"):
        effective_rank(bad)


@pytest.mark.parametrize("kw, match", [({"k": 0}, "k "), ({"k": 2.5}, "k "), ({"eps": 0.0}, "eps"),
                                       ({"eps": 1.5}, "eps"), ({"method": "fast"}, "method")])
def test_bad_intruder_arguments(kw, match):
    w = torch.eye(4)
    with pytest.raises(ConfigError, match=match):
        find_intruders(w, w, **kw)


def test_mismatched_shapes_and_bad_options(gpt2):
    with pytest.raises(ConfigError, match="shapes differ"):
        find_intruders(torch.eye(4), torch.eye(5))
    bigger = models.build("gpt2-1m", vocab_size=600)
    with pytest.raises(ConfigError, match="transformer.wte.weight"):
        intruder_dimensions(gpt2, bigger)
    assert int(intruder_dimensions(gpt2, bigger, exclude="wte|lm_head").sum()) >= 0
    with pytest.raises(ConfigError, match="top_k"):
        model_spectra(gpt2, top_k=0)
    with pytest.raises(ConfigError, match="No 2-D"):
        model_spectra(gpt2, include="nothing-matches")
    with pytest.raises(ConfigError, match="NaN"):
        singular_values(torch.full((3, 3), float("nan")))
    with pytest.raises(ValueError):
        SpectraProbe(eps=0)
