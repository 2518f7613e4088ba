"""Regime probes, sharpness vs the exact Hessian, cognitive tasks, and sweeps (serial and a real Dask cluster)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from workbench import Run, data, models
from workbench.errors import ConfigError
from workbench.regime import (EffectiveRank, KernelAlignment, RepresentationAlignment, Sharpness, WeightChange,
                              hutchinson_trace, kernel_alignment, linear_cka, log_fit, loss_function,
                              representation_alignment, sweep, tangent_kernel, top_eigenvalue)

TINY = {"n_hidden": 12, "steps": 2, "n_train": 32, "n_probe": 6, "batch_size": 8}


def failing_trial(config):
    """A module-level trial (picklable) that fails for one configuration."""
    if config["x"] == 2:
        raise ValueError("x = 2 is not allowed")
    return {"square": float(config["x"] ** 2), "offset": float(config["x"] + config["y"])}


def seeded_trial(config):
    """A module-level trial whose metric is a known function of the seed (NaN-free) and fails for seed 3."""
    if config["seed"] == 3:
        raise ValueError("seed 3 fails")
    return {"loss": float(config["x"] + 0.5 * config["seed"] ** 2), "lr_seen": float(config["lr"])}


def slow_square(config):
    time.sleep(0.05)
    return {"square": float(config["x"] ** 2)}


# ------------------------------------------------------------------ kernels and representations
def test_kernel_alignment_identities():
    a = torch.randn(6, 6)
    k = a @ a.T
    assert kernel_alignment(k, k) == pytest.approx(1.0)
    assert kernel_alignment(k, 5 * k) == pytest.approx(1.0)
    assert kernel_alignment(torch.eye(2), torch.tensor([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(0.0)


def test_tangent_kernel_of_linear_model_is_exact():
    lin = torch.nn.Linear(4, 3, bias=False)
    x = torch.randn(5, 4)
    k = tangent_kernel(lin, x, ["weight"])  # f = W x: ∂f_a(x_i)/∂W · ∂f_b(x_j)/∂W = δ_ab x_i·x_j
    expected = torch.kron((x @ x.T).double(), torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(k, expected, rtol=1e-5, atol=1e-6)


def test_representation_alignment_and_cka():
    h = torch.randn(20, 5)
    assert representation_alignment(h, h) == pytest.approx(1.0)
    assert linear_cka(h, 3 * h + 2) == pytest.approx(1.0)  # centered: invariant to shift and scale
    q, _ = torch.linalg.qr(torch.randn(5, 5))
    assert linear_cka(h, h @ q) == pytest.approx(1.0)  # and to rotations
    assert linear_cka(h, torch.randn(20, 5)) < 0.9


def rnn_run(probes, steps=0, **kw):
    ds = data.load("two_afc", n_train=64, n_val=16)
    model = models.rnn(d_in=3, n_hidden=16, d_out=2)
    run = Run(model, ds, probes=probes, optimizer="sgd", lr=0.05, batch_size=16, eval_every=0, device="cpu", **kw)
    if steps:
        run.run(steps, progress=False)
    return run


def test_probes_on_a_training_rnn():
    probes = [KernelAlignment(params=["weight_rec"], output="last", every=5),
              RepresentationAlignment(every=5), WeightChange(include="weight_rec", every=5), EffectiveRank(every=5)]
    run = rnn_run(probes, steps=10)
    ds = run.record
    assert float(ds.kernel_alignment.sel(step=0)) == pytest.approx(1.0)
    assert float(ds.rep_cka.sel(step=0)) == pytest.approx(1.0)
    assert float(ds.delta_rel_norm.sel(step=0, matrix="weight_rec")) == 0.0
    assert float(ds.kernel_alignment.sel(step=10)) < 1.0
    w0 = run.reference.get("weight_rec")
    manual = float((run.model.weight_rec.detach() - w0).norm() / w0.norm())
    assert float(ds.delta_rel_norm.sel(step=10, matrix="weight_rec")) == pytest.approx(manual, rel=1e-5)
    assert float(ds.distance_from_init.sel(step=10)) == pytest.approx(float((run.model.weight_rec.detach() - w0).norm()), rel=1e-5)
    assert ds.delta_effective_rank.sel(step=10, matrix="weight_rec") > 0 and "kernel_task_alignment" in ds


def test_kernel_probe_bad_inputs():
    with pytest.raises(ConfigError, match="do not exist"):
        rnn_run([KernelAlignment(params=["weight_recurrent"])])
    with pytest.raises(ConfigError, match="matches no parameter"):
        rnn_run([KernelAlignment(params="^nope")])
    with pytest.raises(ConfigError, match="per-example shape"):
        rnn_run([KernelAlignment(params=["weight_rec"], batch={"x": torch.randn(4, 20, 5)})])
    with pytest.raises(ConfigError, match="per-example shape"):
        rnn_run([RepresentationAlignment(batch={"x": torch.randn(4, 7)})])
    with pytest.raises(ConfigError, match="matches no weight matrix"):
        rnn_run([WeightChange(include="^nothing$")])


def test_log_fit_of_distance_from_init():
    steps = np.array([1, 2, 4, 8, 16, 32])
    import xarray as xr

    ds = xr.Dataset({"distance_from_init": ("step", 0.3 * np.log(steps) + 1.0)}, coords={"step": steps})
    fit = log_fit(ds)
    assert fit["slope"] == pytest.approx(0.3) and fit["intercept"] == pytest.approx(1.0) and fit["r2"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="no 'distance_from_init'"):
        log_fit(xr.Dataset({"loss": ("step", [1.0])}, coords={"step": [1]}))


# ------------------------------------------------------------------ sharpness vs the exact Hessian
def exact_hessian(model, batch, names):
    f, params = loss_function(model, batch, names, data.base.regression_loss)
    flat = torch.cat([params[n].reshape(-1) for n in names])
    shapes = [params[n].shape for n in names]

    def g(v):
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            parts[n] = v[i:i + math.prod(s)].reshape(s)
            i += math.prod(s)
        return f(parts)

    return torch.autograd.functional.hessian(g, flat.double().float())


def test_power_iteration_and_hutchinson_match_exact_hessian():
    torch.manual_seed(0)
    model = models.mlp(d_in=3, d_hidden=5, d_out=1, depth=1, activation="tanh")
    batch = {"x": torch.randn(32, 3), "y": torch.randn(32, 1)}
    names = [n for n, _ in model.named_parameters()]
    h = exact_hessian(model, batch, names)
    eigs = torch.linalg.eigvalsh(h.double())
    top = eigs[eigs.abs().argmax()].item()
    f, params = loss_function(model, batch, names, data.base.regression_loss)
    gen = torch.Generator().manual_seed(0)
    rng = torch.get_rng_state()
    eig, _ = top_eigenvalue(f, params, gen, iters=150, tol=1e-8)
    assert eig == pytest.approx(top, rel=1e-2)
    n = 300
    trace = hutchinson_trace(f, params, gen, samples=n)
    off = h.double() - torch.diag(torch.diag(h.double()))
    sd = math.sqrt(2 * (off ** 2).sum().item() / n)  # std of the Rademacher estimator
    assert abs(trace - torch.trace(h).item()) < 4 * sd
    assert torch.equal(torch.get_rng_state(), rng)  # the probe's own generator only


def test_sharpness_probe_on_quadratic():
    lin = torch.nn.Linear(4, 1, bias=False)
    x = torch.randn(64, 4)
    ds = data.Dataset("quad", {"train": data.Split({"x": x, "y": torch.zeros(64, 1)})}, task="regression")
    run = Run(lin, ds, probes=[Sharpness(iters=200, tol=1e-10, samples=0, n_examples=64, every=1)], lr=1e-12,
              eval_every=0, device="cpu", batch_size=64, optimizer="sgd")
    run.step()
    # L = mean((w·x)²) → H = 2 XᵀX / n
    h = 2 * x.T @ x / 64
    assert float(run.record.sharpness.sel(step=0)) == pytest.approx(torch.linalg.eigvalsh(h).max().item(), rel=1e-4)


# ------------------------------------------------------------------ cognitive tasks
def test_cognitive_tasks_shapes_and_labels():
    ds = data.load("two_afc", n_train=40, n_val=10, n_steps=12, response_steps=3, noise=0.0)
    x, y = ds.train.tensors["x"], ds.train.tensors["y"]
    assert x.shape == (40, 12, 3) and y.shape == (40, 12)
    assert (y[:, :9] == -100).all() and set(y[:, 9:].unique().tolist()) <= {0, 1}
    evidence = x[:, 4:9, 1].mean(1) - x[:, 4:9, 2].mean(1)  # noise-free: the stronger channel is the answer
    assert torch.equal((evidence < 0).long(), y[:, -1])
    dms = data.load("delayed_match", n_train=40, n_val=8, noise=0.0)
    xs, ys = dms.train.tensors["x"], dms.train.tensors["y"]
    sample, test = xs[:, 0, 1:].argmax(1), xs[:, 3 + 6, 1:].argmax(1)
    assert torch.equal((sample == test).long(), ys[:, -1])
    assert torch.equal(data.load("two_afc", n_train=8, n_val=2).train.tensors["x"], data.load("two_afc", n_train=8, n_val=2).train.tensors["x"])
    with pytest.raises(ConfigError):
        data.load("two_afc", n_steps=5, fixation_steps=3, response_steps=2)


# ------------------------------------------------------------------ sweeps
def test_serial_sweep_records_failures():
    ds = sweep({"x": [1, 2, 3], "y": [0, 10]}, fn=failing_trial, backend="serial", progress=False)
    assert ds.square.dims == ("x", "y") and ds.square.sel(x=3, y=10).item() == 9.0
    assert ds.status.sel(x=2).values.tolist() == ["error", "error"] and "x = 2" in str(ds.error.sel(x=2, y=0).values)
    assert np.isnan(ds.square.sel(x=2, y=0).item()) and ds.attrs["n_failed"] == 2


def test_sweep_has_the_shape_of_combined_records_and_summarizes_the_same():
    import json

    import xarray as xr

    from workbench.groups import combine, finding, summarize

    ds = sweep({"x": [1.0, 2.0], "seed": [0, 1, 2, 3]}, fn=seeded_trial, fixed={"lr": 0.1}, backend="serial",
               progress=False)
    assert ds.loss.dims == ("x", "seed") and json.loads(ds.attrs["config"]) == {"lr": 0.1}
    # the same numbers as records of runs, combined over their config key "seed"
    records = [xr.Dataset({"loss": ((), float(1.0 + 0.5 * s**2))},
                          attrs={"config": json.dumps({"seed": s, "x": 1.0, "lr": 0.1})}) for s in (0, 1, 2)]
    combined = combine(records, over="seed")
    assert json.loads(combined.attrs["config"]) == json.loads(ds.attrs["config"]) | {"x": 1.0}
    s_sweep, s_comb = summarize(ds, over="seed"), summarize(combined, over="seed")
    assert s_sweep.loss.dims == ("stat", "x")  # one summary per remaining grid point
    for stat in ("mean", "sd", "ci_low", "ci_high", "n"):
        assert float(s_sweep.loss.sel(x=1.0, stat=stat)) == pytest.approx(float(s_comb.loss.sel(stat=stat)))
    assert float(s_sweep.loss.sel(x=2.0, stat="n")) == 3  # the failed seed 3 is NaN and left out
    assert "status" not in s_sweep and "error" not in s_sweep  # text variables are not summarized
    f = finding("x = 2 has the larger loss", ds.loss.sel(x=2.0), ds.loss.sel(x=1.0))
    assert (f["agree"], f["n"], f["verdict"]) == (3, 3, "reproduced")  # a paired difference of exactly 1


def test_sweep_on_a_real_dask_local_cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        ds = sweep({"x": [1, 2, 3, 4], "y": [0]}, fn=failing_trial, client=client, progress=False)
        assert len(client.scheduler_info()["workers"]) == 2
    assert ds.attrs["backend"] == "dask" and ds.status.sel(x=2, y=0).item() == "error"
    assert ds.offset.sel(x=4, y=0).item() == 4.0 and ds.status.sel(x=4, y=0).item() == "ok"


def test_rich_lazy_trial_sweep_on_cluster_with_bad_rank():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        ds = sweep({"rank": [1, 99], "seed": [0]}, fixed=TINY, client=client, progress=False)
    assert ds.status.sel(rank=1, seed=0).item() == "ok" and 0 <= ds.kernel_alignment.sel(rank=1, seed=0).item() <= 1
    assert ds.status.sel(rank=99, seed=0).item() == "error" and "rank must be" in ds.error.sel(rank=99, seed=0).item()
    # the vocabulary's names: W0 truncated to rank 1 has effective rank 1; it moved (ΔW ≠ 0) during training
    ok = ds.sel(rank=1, seed=0)
    assert float(ok.effective_rank_init) == pytest.approx(1.0, abs=1e-4)
    assert float(ok.delta_rel_norm) > 0 and float(ok.delta_effective_rank) >= 1.0


def test_sweep_bad_inputs():
    with pytest.raises(ConfigError, match="empty"):
        sweep({}, fn=failing_trial)
    with pytest.raises(ConfigError, match="non-empty list"):
        sweep({"x": []}, fn=failing_trial)
    with pytest.raises(ConfigError, match="backend"):
        sweep({"x": [1]}, fn=failing_trial, backend="mpi")
    with pytest.raises(ConfigError, match="both in the grid and in fixed"):
        sweep({"x": [1]}, fn=failing_trial, fixed={"x": 2}, backend="serial")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="Cannot reach the Dask scheduler"):
        sweep({"x": [1]}, fn=failing_trial, address="tcp://127.0.0.1:9", connect_timeout=1, progress=False)
    assert time.perf_counter() - t0 < 15


def test_tiny_transformer_on_modular_arithmetic_records_accuracy():
    from workbench.regime.grokking import grokking_run, tiny_transformer, transition_steps

    assert tiny_transformer(p=7, d_model=16, n_layer=1, n_head=2)(torch.tensor([[1, 2]])).shape == (1, 7)
    run = grokking_run(p=7, train_fraction=0.5, steps=4, every=2, d_model=16, batch_size=16, init_scale=2.0)
    rec = run.record
    assert {"train_accuracy", "val_accuracy", "weight_norm", "relative_distance_from_init"} <= set(rec.data_vars)
    assert 0 <= float(rec.val_accuracy.sel(step=4)) <= 1
    steps = transition_steps(rec, train_threshold=0.0, val_threshold=2.0)
    assert steps["fit_step"] == 0.0 and math.isnan(steps["generalize_step"])


def test_grokking_mlp_fits_modular_arithmetic_and_refuses_unknown_architectures():
    from workbench.errors import ConfigError
    from workbench.regime.grokking import grokking_run, tiny_mlp

    assert tiny_mlp(p=7, d_embed=4, d_hidden=8)(torch.tensor([[1, 2], [3, 4]])).shape == (2, 7)
    run = grokking_run(p=7, train_fraction=0.5, steps=60, every=30, d_model=16, batch_size=49, lr=1e-2,
                       weight_decay=0.0, architecture="mlp")
    assert float(run.record.train_accuracy.sel(step=60)) > float(run.record.train_accuracy.sel(step=0))
    assert float(run.record.train_accuracy.sel(step=60)) == 1.0  # 24 pairs memorized in 60 full-batch steps
    with pytest.raises(ConfigError, match="architecture must be one of"):
        grokking_run(p=7, steps=1, architecture="cnn")


@pytest.mark.slow
def test_default_backend_starts_and_closes_its_own_process_cluster():
    ds = sweep({"rank": [1, 99]}, fixed=TINY, n_workers=2, progress=False)  # LocalCluster(processes=True)
    assert ds.attrs["backend"] == "dask" and ds.status.values.tolist() == ["ok", "error"]
    assert "rank must be" in str(ds.error.sel(rank=99).values)
