"""Full spectra as √eig(WᵀW) (workbench/spectra/eig.py): accuracy against an fp64 SVD, and the fp32/fp64 choice."""

import numpy as np
import pytest
import torch

from workbench.errors import ConfigError
from workbench.spectra import model_spectra
from workbench.spectra.core import numerical_rank_sv
from workbench.spectra.eig import RESOLVES, gram_singular_values, resolved_in_fp32
from workbench.spectra.topk import gram


def _matrices():
    g = torch.Generator().manual_seed(0)
    rect = torch.randn(600, 150, generator=g)  # MP, λ_min/λ_max ≈ 0.25: fp32 resolves it
    square = torch.randn(150, 150, generator=g)  # λ_min ≈ 0: needs fp64
    low_rank = torch.randn(400, 6, generator=g) @ torch.randn(6, 150, generator=g)  # rank 6 (a LoRA-like ΔW)
    u, _ = torch.linalg.qr(torch.randn(300, 150, generator=g))
    v, _ = torch.linalg.qr(torch.randn(150, 150, generator=g))
    steep = (u * torch.logspace(0, -5, 150)) @ v.T  # σ from 1 to 1e-5
    return {"rect": rect, "square": square, "low_rank": low_rank, "steep": steep, "wide": rect.T.contiguous()}


@pytest.mark.parametrize("name", ["rect", "square", "low_rank", "steep", "wide"])
def test_every_singular_value_matches_an_fp64_svd(name):
    w = _matrices()[name]
    ref = np.linalg.svd(w.double().numpy(), compute_uv=False)
    got = gram_singular_values(w.unsqueeze(0))[0]
    assert got.dtype == torch.float32 and got.shape == (min(w.shape),)
    np.testing.assert_allclose(got.double().numpy(), ref, rtol=1e-4, atol=1e-6 * ref[0])
    if name == "low_rank":  # the zeros stay below numpy's rank tolerance
        assert int(numerical_rank_sv(got, tuple(w.shape))) == 6


def test_fp32_is_used_only_where_it_resolves_the_spectrum():
    mats = _matrices()
    grams = torch.stack([gram(mats[n]) for n in ("rect", "square", "low_rank", "steep")])
    lam = torch.linalg.eigvalsh(grams.double())
    assert resolved_in_fp32(grams).tolist() == [True, False, False, False]
    assert (lam[:, 0] >= RESOLVES * lam[:, -1]).tolist() == [True, False, False, False]


def test_list_input_fp64_and_bad_entries():
    mats = _matrices()
    listed = gram_singular_values([mats["rect"], mats["wide"]])  # same r: one batch, no stacked copy
    assert listed.shape == (2, 150)
    torch.testing.assert_close(listed[0], listed[1])
    exact = gram_singular_values(mats["square"].double().unsqueeze(0))[0]
    assert exact.dtype == torch.float64
    np.testing.assert_allclose(exact.numpy(), np.linalg.svd(mats["square"].double().numpy(), compute_uv=False),
                               rtol=1e-9, atol=1e-12)
    bad = mats["rect"].clone()
    bad[3, 4] = float("inf")
    with pytest.raises(ConfigError, match="NaN or inf"):
        model_spectra({"w": bad})
