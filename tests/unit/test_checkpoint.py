"""Checkpoint and resume: bit-identical continuation, and refusal of foreign or damaged files."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from workbench import Run, models
from workbench.errors import CorruptFileError, MissingPathError


def _params(run):
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def test_resume_in_new_process_is_bit_identical(tmp_path, stories):
    # dropout on, so the run's RNG stream matters too
    common = dict(batch_size=4, eval_every=4, max_steps=12, lr=3e-3, schedule="cosine", warmup_steps=2, seed=7)
    straight = Run(models.build("gpt2-1m", data=stories, resid_pdrop=0.1), stories, **common)
    straight.run(12, progress=False)

    first = Run(models.build("gpt2-1m", data=stories, resid_pdrop=0.1), stories, **common)
    first.run(5, progress=False)
    ckpt = tmp_path / "ckpt.pt"
    first.save_checkpoint(ckpt)
    out = tmp_path / "resumed.pt"
    script = textwrap.dedent(f"""
        import torch
        from workbench import Run, data, models
        ds = data.load("stories", n_docs=200, n_val_docs=40)
        run = Run.resume({str(ckpt)!r}, model=models.build("gpt2-1m", data=ds, resid_pdrop=0.1), data=ds)
        assert run.global_step == 5
        run.run(7, progress=False)
        torch.save({{k: v for k, v in run.model.state_dict().items()}}, {str(out)!r})
        run.save_record({str(tmp_path / 'resumed.nc')!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    resumed = torch.load(out)
    for name, value in _params(straight).items():
        assert torch.equal(value, resumed[name]), name
    from workbench import open_record
    rec = open_record(tmp_path / "resumed.nc")
    assert list(rec.step.values) == list(straight.record.step.values)
    assert (rec.loss.values == straight.record.loss.values)[1:].all()


def test_resume_rebuilds_preset_and_data(tmp_path, stories):
    run = Run("gpt2-1m", stories, batch_size=4, eval_every=0)
    run.run(2, progress=False)
    run.save_checkpoint(tmp_path / "c.pt")
    again = Run.resume(tmp_path / "c.pt")
    assert again.global_step == 2 and again.run_id == run.run_id
    assert all(torch.equal(a, b) for a, b in zip(_params(run).values(), _params(again).values()))


def test_stop_midway_then_resume_matches(tmp_path, stories):
    import time

    a = Run("gpt2-1m", stories, batch_size=4, eval_every=0, max_steps=10_000)
    a.start()
    while a.global_step < 2:
        time.sleep(0.02)
    a.stop()
    a.save_checkpoint(tmp_path / "c.pt")
    n = a.global_step
    a.run(3, progress=False)
    b = Run.resume(tmp_path / "c.pt", data=stories)
    assert b.global_step == n
    b.run(3, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(_params(a).values(), _params(b).values()))


def test_checkpoint_from_other_model_is_refused(tmp_path, stories):
    run = Run("gpt2-1m", stories, batch_size=4, eval_every=0)
    run.step()
    run.save_checkpoint(tmp_path / "c.pt")
    other = Run("llama-1m", stories, batch_size=4, eval_every=0)
    before = _params(other)
    with pytest.raises(CorruptFileError, match="different model"):
        other.load_checkpoint(tmp_path / "c.pt")
    assert all(torch.equal(before[k], v) for k, v in _params(other).items())  # untouched


def test_truncated_and_missing_checkpoints(tmp_path, stories):
    run = Run("gpt2-1m", stories, batch_size=4, eval_every=0)
    run.step()
    path = tmp_path / "c.pt"
    run.save_checkpoint(path)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="truncated"):
        run.load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(MissingPathError):
        run.load_checkpoint(tmp_path / "nope.pt")
    assert run.global_step == 1
