"""Top-k singular values (workbench.spectra.topk): accuracy on the spectra that break randomized methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from workbench.errors import ConfigError
from workbench.spectra import model_spectra, top_singular_values
from workbench.spectra import topk

PRECISIONS = ["auto", "bfloat16", "float32"]


def _with_spectrum(m: int, n: int, s: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """An m×n matrix with singular values ``s`` (descending) and random singular vectors."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(m, len(s), generator=g)).Q
    v = torch.linalg.qr(torch.randn(n, len(s), generator=g)).Q
    return (u * s) @ v.T


def _spectra() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    i = torch.arange(1, 301, dtype=torch.float32)
    return {
        "flat (random init)": torch.randn(600, 300, generator=g) * 0.02,
        "wide flat": torch.randn(300, 900, generator=g),
        "decaying σ ∝ 1/i": _with_spectrum(600, 300, 1 / i),
        "steep σ ∝ 1/i² (σ_32/σ_1 = 1e-3)": _with_spectrum(600, 300, i ** -2),
        "spikes over a bulk": torch.randn(600, 300, generator=g) / 50
        + _with_spectrum(600, 300, torch.cat([10 * i[:16] ** -0.7, torch.zeros(284)])),
    }


@pytest.mark.parametrize("name", list(_spectra()))
@pytest.mark.parametrize("precision", PRECISIONS)
def test_top_values_within_1e_3_on_every_kind_of_spectrum(name, precision):
    w = _spectra()[name]
    exact = torch.linalg.svdvals(w.double())[:32]
    got = top_singular_values([w], 32, precision=precision)[0].double()
    rel = ((got - exact).abs() / exact).max().item()
    assert rel < 5e-3, f"{name} ({precision}): max relative error {rel:.1e}"


def test_steep_spectra_fall_back_to_fp32_then_exact(monkeypatch):
    """bf16 cannot resolve σ_k ≪ σ_1: without the fallbacks the steep matrix's values would be far off."""
    w = _spectra()["steep σ ∝ 1/i² (σ_32/σ_1 = 1e-3)"]
    exact = torch.linalg.svdvals(w.double())[:32]
    monkeypatch.setattr(topk, "STEEP", 0.0)
    monkeypatch.setattr(topk, "EXACT", 0.0)
    raw = top_singular_values([w], 32, precision="bfloat16")[0].double()
    assert ((raw - exact).abs() / exact).max().item() > 0.1


def test_rank_deficient_matrix_gives_its_values_then_zeros():
    w = _with_spectrum(400, 300, torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0]))
    got = top_singular_values([w], 16)[0]
    torch.testing.assert_close(got[:5], torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0]), rtol=1e-4, atol=0)
    assert got[5:].abs().max() < 1e-4 * 5


def test_fp64_input_stays_fp64_within_the_convergence_tolerance():
    w = torch.randn(500, 200, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = top_singular_values(w[None], 8)
    assert got.dtype == torch.float64 and got.shape == (1, 8)
    np.testing.assert_allclose(got[0].numpy(), np.linalg.svd(w.numpy(), compute_uv=False)[:8], rtol=1e-3)


def test_mixed_shapes_batch_by_gram_size_and_keep_order():
    g = torch.Generator().manual_seed(3)
    mats = [torch.randn(400, 200, generator=g), torch.randn(200, 300, generator=g), torch.randn(50, 30, generator=g),
            torch.randn(200, 900, generator=g)]
    got = top_singular_values(mats, 40)
    assert [len(v) for v in got] == [40, 40, 30, 40]  # k is capped at min(m, n)
    for m, v in zip(mats, got):
        exact = torch.linalg.svdvals(m)[: len(v)]
        assert ((v - exact).abs() / exact).max() < 1e-2


def test_small_matrices_take_the_exact_path():
    w = torch.randn(64, 48, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(top_singular_values([w], 16)[0], torch.linalg.svdvals(w)[:16], rtol=1e-5, atol=1e-6)


def test_seeded_results_repeat_and_conv1d_equals_linear():
    from transformers.pytorch_utils import Conv1D

    w = torch.randn(300, 700, generator=torch.Generator().manual_seed(5))
    conv, lin = Conv1D(300, 700), nn.Linear(700, 300)  # Conv1D stores [in, out]
    with torch.no_grad():
        conv.weight.copy_(w.T)
        lin.weight.copy_(w)
    # fp32: the same values whichever way the weight is stored; bf16 ("auto" on a bf16 CPU) rounds the two memory
    # orders' products differently, within its documented ~1e-3
    for precision, rtol in (("float32", 1e-6), ("auto", 5e-3)):
        a = model_spectra(nn.ModuleDict({"p": conv}), top_k=20, precision=precision)
        b = model_spectra(nn.ModuleDict({"p": lin}), top_k=20, precision=precision)
        np.testing.assert_allclose(a.singular_values.values, b.singular_values.values, rtol=rtol)
        np.testing.assert_array_equal(model_spectra(nn.ModuleDict({"p": lin}), top_k=20,
                                                    precision=precision).singular_values.values,
                                      b.singular_values.values)


def test_tall_matrices_summed_over_row_chunks(monkeypatch):
    """Matrices larger than one cast chunk (a big embedding) sum their Gram matrices over row blocks."""
    w = torch.randn(3000, 200, generator=torch.Generator().manual_seed(6))
    whole = top_singular_values([w], 24, precision="float32")[0]
    init = topk._Caster.__init__
    monkeypatch.setattr(topk._Caster, "__init__", lambda self, mats, dtype: init(self, mats, dtype, 200 * 256))
    chunked = top_singular_values([w.bfloat16().float()], 24, precision="bfloat16")[0]
    assert len(topk._Caster([w], torch.bfloat16).chunks(w)) == 12
    torch.testing.assert_close(chunked, whole, rtol=5e-3, atol=0)


def test_frobenius_and_stable_rank_exact_in_top_k_mode():
    g = torch.Generator().manual_seed(7)
    mats = {"big": torch.randn(4000, 300, generator=g), "w": torch.randn(300, 500, generator=g)}
    full, top = model_spectra(mats), model_spectra(mats, top_k=16)
    np.testing.assert_allclose(top.frobenius_norm, full.frobenius_norm, rtol=1e-6)
    np.testing.assert_allclose(top.stable_rank, full.stable_rank, rtol=1e-2)
    assert "bfloat16" in top.attrs["method"] or "float32" in top.attrs["method"]


def test_gram_upper_triangle_blocks_equal_full_product():
    x = torch.randn(500, 77, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    for blocks in (1, 3, 8, 100):
        torch.testing.assert_close(topk.gram(x, blocks), x.T @ x)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_precision_resolution(precision):
    dtype = topk.compute_dtype(precision, "cpu", torch.float32)
    expected = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                "auto": torch.bfloat16 if topk.native_bf16("cpu") else torch.float32}[precision]
    assert dtype == expected
    assert topk.compute_dtype(precision, "cpu", torch.float64) == torch.float64


@pytest.mark.parametrize("bad, match", [
    (dict(precision="fp8"), "precision must be one of"),
    (dict(degrees=()), "filter degree"),
    (dict(k=0), "k ≥ 1"),
])
def test_bad_arguments_are_clear_errors(bad, match):
    kwargs = dict(k=4) | bad
    with pytest.raises(ConfigError, match=match):
        top_singular_values([torch.randn(300, 200)], **kwargs)


def test_non_finite_and_malformed_inputs_are_refused():
    w = torch.randn(300, 200)
    w[3, 4] = float("nan")
    with pytest.raises(ConfigError, match="NaN or inf"):
        top_singular_values([w], 8)
    with pytest.raises(ConfigError, match="2-D"):
        top_singular_values([torch.randn(5)], 2)
    with pytest.raises(ConfigError, match="at least one"):
        top_singular_values([], 2)


def test_a_dict_or_an_empty_matrix_is_a_clear_error_naming_the_fix():
    w = torch.randn(300, 200)
    with pytest.raises(ConfigError, match=r"got a dict; pass list\(d.values\(\)\)"):
        top_singular_values({"w": w}, 4)
    with pytest.raises(ConfigError, match=r"empty matrices at positions \[1\].*drop them"):
        top_singular_values([w, torch.zeros(0, 200)], 4)
    with pytest.raises(ConfigError, match="torch.as_tensor"):
        top_singular_values([w.numpy()], 4)
