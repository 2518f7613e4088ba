"""Heavy-tailed spectral diagnostics (workbench.spectra.heavytail): planted spectra, the probe, WeightWatcher."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from workbench import Run, models
from workbench.errors import ConfigError
from workbench.matrices import weight_matrices
from workbench.spectra import (SpectraProbe, alpha_warning, fit_power_law, heavytail_metrics, model_spectra, mp_fit,
                               permuted, rand_distance)
from workbench.spectra.heavytail import FULL_VARS, RANDOM_VARS


def _with_spectrum(m: int, n: int, s: np.ndarray, seed: int = 0) -> torch.Tensor:
    """An m×n fp64 matrix with singular values ``s`` and random singular vectors."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(m, len(s), generator=g, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(n, len(s), generator=g, dtype=torch.float64)).Q
    return (u * torch.as_tensor(s)) @ v.T


def _pareto_eigenvalues(alpha: float, n: int, seed: int) -> np.ndarray:
    """n eigenvalues drawn from p(λ) ∝ λ^(−α), λ ≥ 1 (a pure power law: the fit must find its exponent)."""
    return (1 - np.random.default_rng(seed).random(n)) ** (-1 / (alpha - 1))


@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.5])
def test_planted_power_law_tail_recovers_alpha(alpha):
    # a matrix whose ESD (λ = σ²) is a power law over a small bulk; its alpha must be recovered by the matrix path
    lam = np.sort(np.concatenate([_pareto_eigenvalues(alpha, 450, 1), 0.3 * np.random.default_rng(2).random(150)]))[::-1]
    w = _with_spectrum(900, 600, np.sqrt(lam))
    ds = model_spectra({"w": w}).squeeze("matrix")
    assert float(ds.alpha) == pytest.approx(alpha, rel=0.08)
    assert float(ds.alpha_xmin) >= 0.9  # the cut-off found is at the start of the planted tail, not in the bulk
    assert 0 < float(ds.alpha_ks) < 0.06
    # top-k mode fits the tail on the top values only: the same fit when the tail lies within them
    top = model_spectra({"w": w.float()}, top_k=int(ds.num_pl_spikes) + 10, precision="float32").squeeze("matrix")
    assert float(top.alpha) == pytest.approx(float(ds.alpha), rel=1e-3)


def test_top_k_fit_equals_full_fit_restricted_to_top_candidates():
    lam = _pareto_eigenvalues(3.0, 500, 3)
    full = fit_power_law(lam)
    top = fit_power_law(np.sort(lam)[::-1][: full.n_tail + 5])  # the best cut-off is among these candidates
    assert top == full


def test_mp_random_matrix_has_no_spikes_and_a_small_randomized_distance():
    w = torch.randn(800, 400, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.02
    s = torch.linalg.svdvals(w)
    rand = torch.linalg.svdvals(permuted(w.unsqueeze(0), torch.Generator().manual_seed(1))[0])
    m = heavytail_metrics(s, 800, 400, rand_s=rand)
    assert m["num_spikes"] == 0 and m["num_traps"] == 0
    assert m["mp_sigma"] == pytest.approx(1.0, abs=0.03)  # the bulk is the whole spectrum
    assert m["mp_bulk_max"] == pytest.approx(0.02 ** 2 * (800 ** 0.5 + 400 ** 0.5) ** 2, rel=0.05)  # σ²(√N+√M)²
    assert m["rand_distance"] < 0.02
    assert m["mp_softrank"] == pytest.approx(1.0, abs=0.05)


def test_planted_rank_one_spike_is_counted_and_distances_the_randomized_esd():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(800, 400, generator=g, dtype=torch.float64) * 0.02
    edge = 0.02 * (800 ** 0.5 + 400 ** 0.5)
    u, v = torch.randn(800, 1, generator=g, dtype=torch.float64), torch.randn(1, 400, generator=g, dtype=torch.float64)
    spiked = w + 3 * edge * (u / u.norm()) @ (v / v.norm())
    for method in ("fit", "variance"):
        assert mp_fit(torch.linalg.svdvals(spiked).numpy() ** 2, 800, 400, method=method).num_spikes == 1
    rand = torch.linalg.svdvals(permuted(spiked.unsqueeze(0), torch.Generator().manual_seed(1))[0])
    m = heavytail_metrics(torch.linalg.svdvals(spiked), 800, 400, rand_s=rand)
    assert m["num_spikes"] == 1 and m["num_traps"] == 0  # a correlation, not a trap: permuting removes it
    assert m["mp_softrank"] < 0.5
    # top-k mode: the variance-based bulk finds the same spike from the top 8 values and ‖W‖_F²
    top = heavytail_metrics(torch.linalg.svdvals(spiked)[:8], 800, 400, total=float(spiked.pow(2).sum()), top_k=True)
    assert top["num_spikes"] == 1


def test_a_huge_entry_is_a_correlation_trap():
    w = torch.randn(600, 300, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 0.02
    w[10, 20] = 3.0  # one entry far above the bulk survives any permutation
    rand = torch.linalg.svdvals(permuted(w.unsqueeze(0), torch.Generator().manual_seed(1))[0])
    m = heavytail_metrics(torch.linalg.svdvals(w), 600, 300, rand_s=rand)
    assert m["num_traps"] >= 1 and m["num_spikes"] >= 1


def test_norm_metrics_follow_weightwatchers_definitions():
    w = _with_spectrum(60, 40, np.array([4.0, 2.0, 1.0]))
    m = heavytail_metrics(torch.linalg.svdvals(w), 60, 40)
    lam = np.array([16.0, 4.0, 1.0])
    assert m["log_norm"] == pytest.approx(math.log10(lam.sum()))
    assert m["log_spectral_norm"] == pytest.approx(math.log10(16.0))
    assert m["alpha_weighted"] == pytest.approx(m["alpha"] * math.log10(16.0))
    assert m["log_alpha_norm"] == pytest.approx(math.log10(np.sum(lam ** m["alpha"])), rel=1e-9)


def test_warnings_and_bad_input():
    assert "over-trained" in alpha_warning(1.5, 100)
    assert "α > 6" in alpha_warning(7.0, 100)
    assert "only 4" in alpha_warning(3.0, 4)
    assert alpha_warning(3.0, 100) == ""
    with pytest.raises(ConfigError, match="total"):
        heavytail_metrics(torch.ones(3), 5, 3, top_k=True)
    with pytest.raises(ConfigError, match="'fit' or 'variance'"):
        mp_fit(np.ones(3), 5, 3, method="guess")
    assert math.isnan(rand_distance(np.ones(3), np.ones(4)))


def test_probe_records_the_family_live_in_full_and_top_k_mode(stories):
    full = SpectraProbe(every=2, intruders=False, randomize=True, singular_values=True)
    top = SpectraProbe(every=2, intruders=False, top_k=8, prefix="top_")
    run = Run("gpt2-1m", stories, probes=[full, top], batch_size=4, max_steps=4, eval_every=0, log_every=2)
    run.run(4, progress=False)
    rec = run.record.sel(step=[2, 4])  # the probe's steps (the record also has the loss's)
    for key in FULL_VARS + RANDOM_VARS:
        assert rec[key].dims == ("step", "matrix"), key
        assert np.isfinite(rec[key].values).all(), key
    assert rec["singular_values"].dims == ("step", "matrix", "index")
    for key in FULL_VARS:
        assert rec["top_" + key].dims == ("step", "matrix")
    assert rec["alpha_mean"].dims == ("step",)
    assert np.isnan(rec["top_effective_rank"].values).all()  # needs every σ
    np.testing.assert_allclose(rec["top_log_norm"], rec["log_norm"], rtol=1e-5)  # ‖W‖_F² exact in top-k mode
    # top-k alpha equals the full fit wherever the full fit's tail lies within the top 8 values
    inside = rec["num_pl_spikes"].values <= 8
    np.testing.assert_allclose(rec["top_alpha"].values[inside], rec["alpha"].values[inside], rtol=2e-2)
    # the probe's own generator: the same seed gives the same randomized check, the global RNG is untouched
    state = torch.random.get_rng_state()
    again = SpectraProbe(intruders=False, randomize=True)
    again.setup(run)
    first = again.measure(run)["rand_distance"].values
    again.setup(run)
    np.testing.assert_array_equal(again.measure(run)["rand_distance"].values, first)
    assert torch.equal(torch.random.get_rng_state(), state)


# ---------------------------------------------------------------------------------------------- WeightWatcher
WW_COLUMNS = {"alpha": "alpha", "alpha_xmin": "xmin", "alpha_ks": "D", "num_pl_spikes": "num_pl_spikes",
              "log_norm": "log_norm", "log_spectral_norm": "log_spectral_norm", "alpha_weighted": "alpha_weighted",
              "log_alpha_norm": "log_alpha_norm", "mp_sigma": "sigma_mp", "mp_bulk_max": "bulk_max",
              "num_spikes": "num_spikes", "mp_softrank": "mp_softrank"}


@pytest.mark.parametrize("preset, heavy, random", [
    ("gpt2-1m", "transformer.h.1.attn.c_attn.weight", "transformer.h.1.attn.c_proj.weight"),  # Conv1D
    ("llama-1m", "model.layers.1.mlp.down_proj.weight", "model.layers.1.self_attn.q_proj.weight"),  # Linear
])
def test_every_metric_matches_weightwatcher(preset, heavy, random):
    """Conv1D (GPT-2) and Linear (Llama), heavy-tailed and random init, rectangular (stored wide or tall) and
    square (WeightWatcher's quarter-circle branch): equal to WeightWatcher 0.7.7's ``analyze(mp_fit=True)``.

    Tolerance 1e-4 relative: WeightWatcher takes the SVD in fp64, ``model_spectra`` in the weights' fp32; σ
    differ by ~1e-7 relative, which moves the KS distance (a maximum over the tail) by up to ~1e-5. Counts
    (``num_pl_spikes``, ``num_spikes``) are equal.
    """
    ww = pytest.importorskip("weightwatcher")
    model = models.build(preset)
    mats = weight_matrices(model)
    with torch.no_grad():  # "trained-like": heavy-tailed entries
        mats[heavy].copy_(torch.distributions.StudentT(2.5).sample(mats[heavy].shape) * 0.02)
    watcher = ww.WeightWatcher(model=model, log_level=logging.ERROR)
    ids = [int(r.layer_id) for _, r in watcher.describe().iterrows() if r.longname + ".weight" in (heavy, random)]
    df = watcher.analyze(layers=ids, mp_fit=True)  # only these two layers: WeightWatcher's MP fit is slow
    ds = model_spectra(model, include=f"^({heavy}|{random})$".replace(".", r"\."))
    rows = {row["longname"] + ".weight": row for _, row in df.iterrows()}
    assert set(rows) == {heavy, random}
    for name in (heavy, random):
        for ours, theirs in WW_COLUMNS.items():
            assert float(ds[ours].sel(matrix=name)) == pytest.approx(rows[name][theirs], rel=1e-4, abs=1e-9), \
                (name, ours)
    assert float(ds.num_spikes.sel(matrix=heavy)) > 0 == float(ds.num_spikes.sel(matrix=random))


def test_esd_view_draws_the_fit_mp_edge_and_badge_from_a_live_run(stories):
    import holoviews as hv

    from widgets.esd import ESDView, esd_data, esd_plot

    run = Run("gpt2-1m", stories, probes=[SpectraProbe(every=2, intruders=False, singular_values=True)], batch_size=4,
              max_steps=4, eval_every=0, log_every=2)
    run.run(4, progress=False)
    view = ESDView(run)  # reads run.history with its own cursors
    view.stop_polling()
    name = "transformer.h.0.mlp.c_fc.weight"
    view.matrix, view.step = name, 2
    assert view.param.step.objects == [None, 0, 2, 4] and not view.alert.visible  # the probe also logs step 0
    d = esd_data(view.dataset(), name, 2)
    assert d["alpha"] == pytest.approx(float(run.record.alpha.sel(step=2, matrix=name)))
    assert d["eigenvalues"].size == 128 and not d["top_k"]
    labels = [el.label for el in view.pane.object]
    assert any(label.startswith("power law α =") for label in labels) and "MP edge λ+" in labels
    assert view.badge.visible == bool(d["warning"])
    hv.render(esd_plot(d, name))  # renders in Bokeh without error
    # a static Dataset with a planted α = 2.5 tail shows no warning
    lam = np.sort(np.concatenate([_pareto_eigenvalues(2.5, 300, 1), 0.3 * np.random.default_rng(2).random(100)]))[::-1]
    ok = esd_data(model_spectra({"w": _with_spectrum(600, 400, np.sqrt(lam))}), "w")
    assert ok["warning"] == "" and 2 < ok["alpha"] < 3
