"""benchmarks/gpu_check.py (#13 item 4) runs on the CPU at small size and reports every figure it promises."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ("device", "preset", "parameters", "autocast", "steps_per_sec", "tokens_per_sec", "flops_per_token",
          "peak_flops", "peak_source", "mfu", "mfu_attention", "spectra_full_s", "spectra_topk_s", "intruder_probe_s",
          "probe_overhead", "intruders_total", "loss_first", "loss_last")


def test_gpu_check_small_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--small", "--device", "cpu",
                           "--no-fsdp", "--json", str(out)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert all(k in result for k in FIELDS), [k for k in FIELDS if k not in result]
    printed = json.loads(next(line[5:] for line in proc.stdout.splitlines() if line.startswith("JSON ")))
    assert printed == result
    assert result["device"] == "cpu" and result["preset"] == "gpt2-1m" and result["autocast"] == "none"
    assert result["tokens_per_sec"] == result["steps_per_sec"] * 4 * 64  # batch × seq of --small
    assert result["flops_per_token"] == 6 * result["parameters"]
    assert result["peak_source"].startswith("measured") and 0 < result["mfu"] < 1
    assert math.isclose(result["mfu"], result["flops_per_token"] * result["tokens_per_sec"] / result["peak_flops"])
    assert all(result[k] > 0 for k in ("spectra_full_s", "spectra_topk_s", "intruder_probe_s", "probe_overhead"))
    assert result["intruders_total"] is not None  # the probe ran inside the run and logged
    for word in ("steps/s", "tokens/s", "MFU", "probe overhead"):
        assert word in proc.stdout
    assert "attention_mask" not in proc.stderr  # no warning flood from the model


@pytest.mark.slow
def test_gpu_check_fsdp_part_falls_back_to_two_cpu_processes(tmp_path):
    """The sharded part of the one-call check (FSDP over every GPU) runs on a CPU as two gloo processes."""
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--small", "--device", "cpu",
                           "--json", str(out)], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    sharded = result["fsdp"]
    assert all(k in sharded for k in FIELDS), [k for k in FIELDS if k not in sharded]
    assert sharded["strategy"] == "fsdp" and sharded["world_size"] == 2 and result["world_size"] == 1
    assert len(sharded["peak_memory_gib_per_rank"]) == 2 and all(m > 0 for m in sharded["peak_memory_gib_per_rank"])
    assert sharded["state_gather_s"] > 0 and sharded["intruders_total"] is not None
    # the same data and global batch: the sharded run's losses are the one-process run's (fp32 rounding)
    assert abs(sharded["loss_first"] - result["loss_first"]) < 1e-5
    assert abs(sharded["loss_last"] - result["loss_last"]) < 1e-5
    assert proc.stdout.count("gpu_check:") == 2 and "peak memory  per rank" in proc.stdout
