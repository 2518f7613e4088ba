"""The one "what moved since W0" engine (workbench.spectra.moved) and the one vocabulary (workbench.vocabulary).

Every expectation is computed independently of the engine: planted updates with known norms and ranks,
numpy SVDs, or exact zeros; the thin callers (compare, delta_summary, update_summary, the regime probes)
must give the engine's numbers under the vocabulary's names, and records saved with old names must open
with the new ones.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from workbench import Run, Snapshot, data, models, vocabulary
from workbench.errors import ConfigError
from workbench.record import open_record, save
from workbench.spectra import BaseVectors, compare
from workbench.spectra.moved import VARIABLES, MovedProbe, what_moved


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny SVDs gain nothing from threads on the shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def unit(n: int, seed: int) -> torch.Tensor:
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (v / v.norm()).float()


def random(m: int, n: int, seed: int) -> torch.Tensor:
    return torch.randn(m, n, generator=torch.Generator().manual_seed(seed)) / np.sqrt(n)


def test_nothing_moved_at_w0():
    model = models.build("gpt2-1m", seed=0)
    ds = what_moved(Snapshot.from_model(model), model, embeddings=False)
    assert set(ds.data_vars) == set(VARIABLES) and ds.sizes["matrix"] == 16
    for name in ("delta_norm", "delta_rel_norm", "delta_effective_rank", "delta_stable_rank", "delta_numerical_rank",
                 "delta_spectral_norm", "intruders"):
        assert (ds[name].values == 0).all(), name
    assert float(ds.distance_from_init) == 0.0 and float(ds.relative_distance_from_init) == 0.0
    assert int(ds.intruders_total) == 0 and ds.intruders.dtype == np.int64
    assert float(ds.subspace_overlap.min()) > 1 - 1e-6 and float(np.nanmax(ds.principal_angles)) < 1e-3
    np.testing.assert_array_equal(ds.singular_values, ds.singular_values_init)
    assert float(np.nanmax(np.abs(ds.singular_value_shift))) == 0.0


def test_planted_rank_one_update_has_the_right_norms_and_ranks():
    w0 = {"a": random(48, 32, 0), "b": random(20, 30, 1)}
    w = {"a": w0["a"] + 3.0 * torch.outer(unit(48, 2), unit(32, 3)),  # ‖ΔW‖_F = ‖ΔW‖_2 = 3, rank 1
         "b": w0["b"].clone()}
    w["b"][:2, :2] += torch.eye(2) * 0.5  # ΔW = 0.5·(e1e1ᵀ + e2e2ᵀ): ‖·‖_F = √0.5, two equal σ: ranks 2
    ds = what_moved(w0, w)
    a, b = ds.sel(matrix="a"), ds.sel(matrix="b")
    assert float(a.delta_norm) == pytest.approx(3.0, rel=1e-5)
    assert float(a.delta_rel_norm) == pytest.approx(3.0 / np.linalg.norm(w0["a"].numpy()), rel=1e-5)
    assert float(a.delta_effective_rank) == pytest.approx(1.0, abs=1e-4)
    assert float(a.delta_stable_rank) == pytest.approx(1.0, abs=1e-4)
    assert int(a.delta_numerical_rank) == 1 and float(a.delta_spectral_norm) == pytest.approx(3.0, rel=1e-5)
    assert float(b.delta_norm) == pytest.approx(np.sqrt(0.5), rel=1e-5)
    assert float(b.delta_effective_rank) == pytest.approx(2.0, abs=1e-4) and int(b.delta_numerical_rank) == 2
    assert float(ds.distance_from_init) == pytest.approx(np.sqrt(9.0 + 0.5), rel=1e-5)
    total0 = np.sqrt(sum(np.linalg.norm(m.numpy()) ** 2 for m in w0.values()))
    assert float(ds.relative_distance_from_init) == pytest.approx(np.sqrt(9.5) / total0, rel=1e-5)
    # ranks of W and W0 and the spectrum shift against numpy's SVD
    for name in ("a", "b"):
        s, s0 = np.linalg.svd(w[name].double().numpy(), compute_uv=False), np.linalg.svd(w0[name].double().numpy(), compute_uv=False)
        p = s / s.sum()
        assert float(ds.effective_rank.sel(matrix=name)) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-5)
        assert float(ds.stable_rank_init.sel(matrix=name)) == pytest.approx((s0 ** 2).sum() / s0[0] ** 2, rel=1e-5)
        np.testing.assert_allclose(ds.singular_value_shift.sel(matrix=name).dropna("index"), s - s0, atol=1e-5)


def test_planted_intruder_is_counted_and_angles_match_numpy():
    w0 = random(64, 32, 4)  # tall: W0's 32 left singular vectors leave a 32-dim complement
    u0 = np.linalg.svd(w0.double().numpy(), full_matrices=False)[0]
    x = torch.randn(64, generator=torch.Generator().manual_seed(5), dtype=torch.float64).numpy()
    x -= u0 @ (u0.T @ x)  # orthogonal to every base vector: |cos| = 0 with all of them
    w = w0 + 10.0 * torch.outer(torch.as_tensor(x / np.linalg.norm(x)).float(), unit(32, 6))
    ds = what_moved({"w": w0}, {"w": w}, k=5)
    assert int(ds.intruders.sel(matrix="w")) == 1 and int(ds.intruders_total) == 1
    u = np.linalg.svd(w.double().numpy(), full_matrices=False)[0]
    np.testing.assert_allclose(ds.max_cos.sel(matrix="w"), np.abs(u[:, :5].T @ u0).max(1), atol=1e-4)
    assert float(ds.max_cos.sel(matrix="w", rank=0)) < 0.1 and (ds.max_cos.sel(matrix="w").values[1:] > 0.5).all()
    overlap = (np.linalg.norm(u0[:, :5].T @ u[:, :5]) ** 2) / 5  # mean cos² of the principal angles
    assert float(ds.subspace_overlap.sel(matrix="w")) == pytest.approx(overlap, abs=1e-4)
    from scipy.linalg import subspace_angles

    np.testing.assert_allclose(ds.principal_angles.sel(matrix="w"), np.sort(subspace_angles(u0[:, :5], u[:, :5])), atol=1e-4)
    # the randomized top-k finds the same intruder
    assert int(what_moved({"w": w0}, {"w": w}, ["intruders"], k=5, method="lowrank").intruders.sel(matrix="w")) == 1


def _conv1d_and_linear(w: torch.Tensor):
    from transformers.pytorch_utils import Conv1D

    conv, lin = Conv1D(w.shape[0], w.shape[1]), nn.Linear(w.shape[1], w.shape[0])  # Conv1D stores [in, out]
    with torch.no_grad():
        conv.weight.copy_(w.T)
        lin.weight.copy_(w)
    return nn.ModuleDict({"proj": conv}), nn.ModuleDict({"proj": lin})


def test_conv1d_and_linear_agree():
    conv, lin = _conv1d_and_linear(random(40, 24, 7))
    ref_conv, ref_lin = Snapshot.from_model(conv), Snapshot.from_model(lin)
    update = 4.0 * torch.outer(unit(40, 8), unit(24, 9))  # [out, in]
    with torch.no_grad():
        conv["proj"].weight.add_(update.T)
        lin["proj"].weight.add_(update)
    a, b = what_moved(ref_conv, conv), what_moved(ref_lin, lin)
    for name in VARIABLES:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-5, atol=1e-6, err_msg=name)
    assert float(a.delta_effective_rank.sel(matrix="proj.weight")) == pytest.approx(1.0, abs=1e-4)


def test_only_what_is_asked_is_computed_and_w0_is_svd_once():
    w0 = {"a": random(30, 20, 1), "b": random(30, 20, 2)}
    w = {n: m + 0.1 for n, m in w0.items()}
    cache = BaseVectors()
    norms = what_moved(w0, w, ["delta_rel_norm", "distance_from_init"], cache=cache)
    assert set(norms.data_vars) == {"delta_rel_norm", "distance_from_init"} and cache.computed == 0  # norms: no SVD
    what_moved(w0, w, ["intruders", "effective_rank_init"], cache=cache)
    what_moved(w0, w, ["principal_angles"], cache=cache)
    assert cache.computed == 2  # W0's SVD once per matrix, reused


def test_bad_arguments_are_refused():
    w0 = {"a": torch.eye(4)}
    with pytest.raises(ConfigError, match="Unknown 'what moved' variable"):
        what_moved(w0, w0, ["relative_change"])
    with pytest.raises(ConfigError, match="no weight matrix 'b'"):
        what_moved(w0, w0, names=["b"])
    with pytest.raises(ConfigError, match="No matrix names in common"):
        what_moved(w0, {"c": torch.eye(4)})
    with pytest.raises(ConfigError, match="shapes differ"):
        what_moved(w0, {"a": torch.eye(5)})
    with pytest.raises(ConfigError, match="NaN"):
        what_moved(w0, {"a": torch.full((4, 4), float("nan"))}, ["effective_rank"])
    with pytest.raises(ConfigError, match="matches no weight matrix"):
        Run("gpt2-1m", data.load("stories", n_docs=20), probes=[MovedProbe(include="^nothing$")], eval_every=0)


def test_probes_and_thin_callers_report_the_engines_numbers():
    from workbench.finetune import DeltaProbe, delta_summary
    from workbench.regime import EffectiveRank, WeightChange
    from workbench.unlearn import moved_most, update_summary

    stories = data.load("stories", n_docs=100)
    probes = [WeightChange(include="h\\.0\\.", every=2), EffectiveRank(include="h\\.0\\.", every=2),
              DeltaProbe(["transformer.h.1.mlp.c_fc.weight"], every=2),
              MovedProbe(variables=["intruders", "subspace_overlap", "intruders_total"], every=2, embeddings=False)]
    run = Run("gpt2-1m", stories, probes=probes, batch_size=4, eval_every=0, max_steps=4, lr=3e-3)
    before = copy.deepcopy(run.model)
    run.run(4, progress=False)
    rec = run.record
    engine = what_moved(run.reference, run.model)
    for name in ("delta_rel_norm", "effective_rank", "delta_effective_rank", "delta_norm", "intruders", "subspace_overlap"):
        logged = rec[name].sel(step=4).dropna("matrix")
        assert logged.sizes["matrix"] > 0
        np.testing.assert_allclose(logged, engine[name].sel(matrix=logged.matrix), rtol=1e-5, err_msg=name)
    h0 = [n for n in engine.matrix.values if ".h.0." in n]
    d = engine.delta_norm.sel(matrix=h0)
    assert float(rec.distance_from_init.sel(step=4)) == pytest.approx(float(np.sqrt((d ** 2).sum())), rel=1e-5)
    assert float(rec.delta_rel_norm.sel(step=0).max()) == 0.0 and float(rec.delta_rel_norm.sel(step=4).min()) > 0
    assert probes[-1].base_vectors.computed == 16  # W0's SVD once, not per measurement
    summary = delta_summary(run.model, run.reference, h0)
    np.testing.assert_allclose(summary.delta_stable_rank, engine.delta_stable_rank.sel(matrix=h0), rtol=1e-5)
    upd = update_summary(before, run.model)
    np.testing.assert_allclose(upd.delta_rel_norm, engine.delta_rel_norm.sel(matrix=upd.matrix), rtol=1e-5)
    top = moved_most(upd, 3)
    assert [v for _, v in top] == sorted(upd.delta_rel_norm.values, reverse=True)[:3]
    xr.testing.assert_allclose(compare(run.reference, run.model), engine)


def test_records_with_old_names_open_with_the_new_ones(tmp_path):
    old = xr.Dataset({"relative_weight_change": (("step", "matrix"), [[0.0, 0.0], [0.1, 0.2]]),
                      "erank_dw": (("step", "matrix"), [[0.0, 0.0], [1.0, 2.0]]),
                      "delta_frobenius_norm": ("matrix", [0.3, 0.4]), "erank_init": ("matrix", [5.0, 6.0]),
                      "loss": ("step", [2.0, 1.0])},
                     coords={"step": [0, 10], "matrix": ["a", "b"]})
    path = save(old, tmp_path / "old.nc")
    ds = open_record(path)
    assert {"delta_rel_norm", "delta_effective_rank", "delta_norm", "effective_rank_init", "loss"} <= set(ds.data_vars)
    assert not {"relative_weight_change", "erank_dw", "delta_frobenius_norm"} & set(ds.data_vars)
    np.testing.assert_array_equal(ds.delta_effective_rank.sel(step=10), [1.0, 2.0])
    np.testing.assert_array_equal(ds.delta_norm, [0.3, 0.4])
    # two old names for one new one, or an old name beside its new one: nothing is overwritten
    both = vocabulary.upgrade(xr.Dataset({"delta_norm": ("m", [1.0]), "delta_frobenius_norm": ("m", [2.0])}))
    assert float(both.delta_norm[0]) == 1.0 and "delta_frobenius_norm" in both
    clash = vocabulary.upgrade(xr.Dataset({"relative_change": ("m", [1.0]), "relative_weight_change": ("m", [2.0])}))
    assert set(clash.data_vars) == {"relative_change", "relative_weight_change"}


def test_the_vocabulary_table_documents_every_name():
    doc = vocabulary.__doc__
    for name, (_, dims, unit) in vocabulary.VOCABULARY.items():
        line = next((ln for ln in doc.splitlines() if ln.startswith(f"``{name}``")), None)
        assert line is not None, f"{name} is missing from the table"
        assert unit in line and ("(scalar)" in line if not dims else " × ".join(dims) in line), name
    assert set(VARIABLES) == set(vocabulary.VOCABULARY)
    for old, new in vocabulary.OLD_NAMES.items():
        assert old not in vocabulary.VOCABULARY and re.fullmatch(r"[a-z_]+", new), old
