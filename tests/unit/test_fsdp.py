"""Sharded data-parallel runs (#13 item 1, ``strategy="fsdp"``): two gloo processes with FSDP2 train like one
process with the same global batch, their probes see the full weights, and their checkpoints resume under
another world size and strategy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import workbench as wb
from workbench import Run, cli, data, fsdp
from workbench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DATA_OPTIONS = '{"n_docs": 200, "n_val_docs": 40}'
# FSDP reduce-scatters the gradients (mean over 2 ranks) instead of one process's single backward: fp32 rounding
# only, as for DDP (tests/unit/test_distributed.py). Measured: loss ~1e-7, weights ~4e-6 after AdamW steps.
LOSS_TOL = 1e-5
WEIGHT_TOL = 1e-5


def test_fsdp_outside_a_launcher_is_refused(tiny_run):
    with pytest.raises(ConfigError, match="--strategy fsdp"):
        tiny_run(strategy="fsdp")


def test_cli_strategy_needs_processes_and_goes_to_the_workers():
    assert cli.main(["train", "--strategy", "fsdp", "--steps", "1"]) == cli.EXIT_ERROR
    assert cli.main(["train", "--strategy", "single", "--nproc-per-node", "2"]) == cli.EXIT_ERROR
    argv = ["train", "--nproc-per-node", "2", "--strategy", "fsdp", "--steps", "3"]
    assert cli._worker_argv(argv, "fsdp") == ["train", "--steps", "3", "--strategy", "fsdp"]
    assert cli._worker_argv(["train", "--nproc-per-node=2"]) == ["train", "--strategy", "ddp"]


def test_optimizer_state_layouts_round_trip():
    """The name-keyed layout of torch.distributed.checkpoint and the plain numbered one convert both ways."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    opt = torch.optim.AdamW([{"params": model[0].parameters()}, {"params": model[1].parameters(), "lr": 0.1}])
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    plain = opt.state_dict()
    named = fsdp._indexed_to_named(plain, fsdp._group_names(model, opt))
    assert named["param_groups"][1]["params"] == ["1.weight", "1.bias"]
    assert torch.equal(named["state"]["1.bias"]["exp_avg"], plain["state"][3]["exp_avg"])
    back = fsdp._named_to_indexed(named)
    assert back["param_groups"] == plain["param_groups"]
    assert all(torch.equal(back["state"][i]["exp_avg"], plain["state"][i]["exp_avg"]) for i in plain["state"])


def _train_cli(tmp_path, name, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "workbench.cli", "train", "--quiet", "--set", "eval_every=0",
           "--out", str(tmp_path / f"{name}.nc"), "--checkpoint", str(tmp_path / f"{name}.pt"), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float((a[k] - b[k]).abs().max()) for k in b)


@pytest.mark.slow
def test_two_fsdp_processes_equal_one_process(tmp_path):
    proc = _train_cli(tmp_path, "fsdp", "--preset", "gpt2-1m", "--data", "stories", "--data-options", DATA_OPTIONS,
                      "--steps", "3", "--batch-size", "8", "--set", "grad_accum_steps=2", "--probe", "spectra:3",
                      "--nproc-per-node", "2", "--strategy", "fsdp")
    assert proc.stdout.count("status finished") == 1  # only rank 0 prints (and writes)
    stories = data.load("stories", n_docs=200, n_val_docs=40)
    one = Run("gpt2-1m", stories, batch_size=8, eval_every=0)
    one.add_probe("spectra", every=3)
    for _ in range(3):
        one.step()
    record, single = wb.open_record(tmp_path / "fsdp.nc"), one.record
    assert wb.meta(record)["config"]["strategy"] == "fsdp"
    assert record.loss.values[1:].tolist() == pytest.approx(single.loss.values[1:].tolist(), abs=LOSS_TOL)
    # the spectra probe saw the gathered full weights: the same spectra as one process, W0 (step 0) and step 3
    assert record.sizes["matrix"] == single.sizes["matrix"] > 0
    for name in ("effective_rank", "stable_rank", "intruders"):
        np.testing.assert_allclose(record[name].values, single[name].values, rtol=1e-4, atol=1e-4, err_msg=name)
    saved = torch.load(tmp_path / "fsdp.pt", weights_only=False)["run"]
    one_state = one.state_dict()
    assert _max_diff(saved["model"], one_state["model"]) < WEIGHT_TOL  # full weights gathered on rank 0
    assert saved["optimizer"]["param_groups"] == one_state["optimizer"]["param_groups"]
    assert _max_diff({k: v["exp_avg_sq"] for k, v in saved["optimizer"]["state"].items()},
                     {k: v["exp_avg_sq"] for k, v in one_state["optimizer"]["state"].items()}) < 1e-8
    # a different world size and strategy: the FSDP checkpoint resumes in one process, the same data order
    resumed = Run.resume(tmp_path / "fsdp.pt")
    assert resumed.strategy == "single"
    resumed.run(2, progress=False)
    # ... and again under FSDP over two processes (the loaded optimizer state is carried into the shards)
    _train_cli(tmp_path, "again", "--resume", str(tmp_path / "fsdp.pt"), "--steps", "2",
               "--nproc-per-node", "2", "--strategy", "fsdp")
    one.run(2, progress=False)
    again = wb.open_record(tmp_path / "again.nc")
    assert again.loss.values[-2:].tolist() == pytest.approx(one.record.loss.values[-2:].tolist(), abs=LOSS_TOL)
    assert resumed.history.latest("loss") == pytest.approx(one.history.latest("loss"), abs=LOSS_TOL)
    final = one.model.state_dict()
    assert _max_diff(resumed.model.state_dict(), final) < WEIGHT_TOL
    assert _max_diff(torch.load(tmp_path / "again.pt", weights_only=False)["run"]["model"], final) < WEIGHT_TOL


FINETUNE_SCRIPT = """
import sys, torch
from workbench import data, distributed, fsdp
from workbench.finetune.stage import FineTune
ds = data.load("stories", n_docs=200, n_val_docs=40)
run = FineTune("gpt2-1m", ds, method=sys.argv[2], batch_size=8, eval_every=0, intruders_every=2, forget_eval="",
               strategy=sys.argv[1], lr=3e-3)
for _ in range(2):
    run.step()
weights = fsdp.model_state(run.model)  # under fsdp a collective: every rank calls it, rank 0 gets the full weights
if distributed.is_main():
    h = run.history.to_dataset()
    torch.save({"weights": weights, "loss": h.loss.values.tolist(), "intruders": h.intruders.values.tolist(),
                "sharded": fsdp.is_sharded(run.model), "class": fsdp.class_name(run.model)}, sys.argv[1] + sys.argv[2] + ".pt")
distributed.shutdown()
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora"])
def test_finetune_under_fsdp_equals_one_process(tmp_path, method):
    """FineTune (LoRA: FSDP shards the PEFT model's blocks) under torchrun with strategy='fsdp': the same losses,
    the same intruder counts (its SpectraProbe sees the gathered effective weights) and weights as one process."""
    (tmp_path / "ft.py").write_text(FINETUNE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for cmd in ([sys.executable, "ft.py", "single", method],
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "ft.py", "fsdp",
                 method]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    one, sharded = (torch.load(tmp_path / f"{name}{method}.pt") for name in ("single", "fsdp"))
    assert sharded["sharded"] and not one["sharded"] and sharded["class"] == one["class"]
    assert sharded["loss"] == pytest.approx(one["loss"], abs=LOSS_TOL, nan_ok=True)
    np.testing.assert_allclose(np.array(sharded["intruders"]), np.array(one["intruders"]))
    assert _max_diff(sharded["weights"], one["weights"]) < 1e-4  # LoRA factors under AdamW at lr 3e-3 (as under DDP)
