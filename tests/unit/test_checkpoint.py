"""Checkpoint and resume: bit-identical continuation, and refusal of foreign or damaged files."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from workbench import Run, models
from workbench.errors import ConfigError, CorruptFileError, MissingPathError


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
        torch.set_num_threads({torch.get_num_threads()})  # bit-identical means the same machine settings, threads too
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


# ---------------------------------------------------------------- all or nothing
def _snapshot_of(run):
    opt = run.torch_optimizer
    return {"params": _params(run), "lr": run.lr, "label": run.label, "step": run.global_step,
            "rows": len(run.history), "run_id": run.run_id,
            "adam": {k: v.clone() for s in opt.state.values() for k, v in s.items() if torch.is_tensor(v)} if opt else {}}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            assert a[k].keys() == b[k].keys(), k
            assert all(torch.equal(a[k][n], b[k][n]) for n in a[k]), k
        else:
            assert a[k] == b[k], k


def _damage_optimizer(run_state):
    opt = run_state["optimizer"]
    first = next(iter(opt["state"]))
    opt["state"][first]["exp_avg"] = torch.zeros(3, 3)  # wrong shape for that parameter


def _damage_optimizer_groups(run_state):
    run_state["optimizer"]["param_groups"] = []


@pytest.mark.parametrize("damage, section", [
    (_damage_optimizer, "optimizer"),
    (_damage_optimizer_groups, "optimizer"),
    (lambda s: s["rng"].update(torch=torch.zeros(5)), "RNG"),
    (lambda s: s["history"].update(rows=[{"loss": 1.0}]), "history"),
    (lambda s: s.update(reference={"bogus": 1}), "reference"),
    (lambda s: s["config"].update(lr="fast"), "config"),
    (lambda s: s.update(step=-3), "step"),
    (lambda s: s["model"].pop(next(iter(s["model"]))), "different model"),
])
def test_a_damaged_section_leaves_the_run_untouched(tmp_path, stories, damage, section):
    src = Run("gpt2-1m", stories, batch_size=4, eval_every=0, label="source", lr=3e-3)
    src.run(2, progress=False)
    state = torch.load(src.save_checkpoint(tmp_path / "c.pt"), weights_only=True)
    damage(state["run"])
    torch.save(state, tmp_path / "bad.pt")
    target = Run("gpt2-1m", stories, batch_size=4, eval_every=0, label="target", seed=5)
    target.run(1, progress=False)
    before = _snapshot_of(target)
    with pytest.raises(CorruptFileError, match=section) as err:
        target.load_checkpoint(tmp_path / "bad.pt")
    assert "bad.pt" in str(err.value)
    _same(before, _snapshot_of(target))
    target.step()  # still a working run


def test_loading_leaves_global_rng_and_other_runs_alone(tmp_path, stories):
    """Two runs in one process: loading a checkpoint into one changes nothing the other draws."""
    import random

    import numpy as np

    def dropout_model():
        return models.build("gpt2-1m", data=stories, resid_pdrop=0.2, embd_pdrop=0.2, attn_pdrop=0.2)

    def next_step_draws(run):
        """The batch and the dropout masks of ``run``'s next step."""
        masks, batches = [], []
        hooks = [m.register_forward_hook(lambda m, i, o: masks.append((o == 0).clone()))
                 for m in run.model.modules() if isinstance(m, torch.nn.Dropout)]
        cb = run.add_callback("before_step", lambda r, batch, **_: batches.append(batch["input_ids"].clone()))
        run.step()
        run.callbacks.remove(cb)
        for h in hooks:
            h.remove()
        return batches[0], masks

    torch.manual_seed(0)
    other_alone = Run(dropout_model(), stories, batch_size=4, eval_every=0, seed=11)
    other_alone.run(2, progress=False)
    want_batch, want_masks = next_step_draws(other_alone)

    torch.manual_seed(0)
    other = Run(dropout_model(), stories, batch_size=4, eval_every=0, seed=11)
    other.run(2, progress=False)
    saved = Run(dropout_model(), stories, batch_size=4, eval_every=0, seed=3)
    saved.run(3, progress=False)
    saved.save_checkpoint(tmp_path / "c.pt")
    loaded = Run(dropout_model(), stories, batch_size=4, eval_every=0, seed=4)
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    py, nps, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    loaded.load_checkpoint(tmp_path / "c.pt")
    assert random.getstate() == py and torch.equal(torch.get_rng_state(), th)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), nps))
    batch, masks = next_step_draws(other)
    assert torch.equal(batch, want_batch) and len(masks) == len(want_masks) > 0
    assert all(torch.equal(a, b) for a, b in zip(masks, want_masks)) and any(m.any() for m in masks)
    assert loaded.rng.python.random() == saved.rng.python.random()  # each run's own Python stream travels


def test_state_dict_round_trip_in_process_continues_identically(stories):
    common = dict(batch_size=4, eval_every=0, seed=2, lr=2e-3)
    a = Run(models.build("gpt2-1m", data=stories, resid_pdrop=0.1), stories, **common)
    a.run(2, progress=False)
    b = Run(models.build("gpt2-1m", data=stories, resid_pdrop=0.1), stories, **{**common, "seed": 9})
    b.load_state_dict(a.state_dict())
    assert b.seed == 2 and b.run_id == a.run_id and b.global_step == 2
    a.run(2, progress=False)
    b.run(2, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(_params(a).values(), _params(b).values()))
    assert float(b.record.wall_time.sel(step=2)) == float(a.record.wall_time.sel(step=2))  # the history travelled


# ---------------------------------------------------------------- the data a checkpoint was trained on
def test_resume_refuses_a_changed_data_file_unless_allowed(tmp_path):
    from workbench import data

    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(f"Story {i}: the cat sat on the mat and looked at the moon." for i in range(60)))
    run = Run("gpt2-1m", data.load(text), batch_size=4, eval_every=0)
    run.run(2, progress=False)
    ckpt = run.save_checkpoint(tmp_path / "c.pt")
    assert Run.resume(ckpt).global_step == 2  # unchanged file: fine
    text.write_text(text.read_text().replace("moon", "sun"))
    with pytest.raises(ConfigError, match="data changed since it was saved.*allow_data_change=True"):
        Run.resume(ckpt)
    again = Run.resume(ckpt, allow_data_change=True)
    assert again.global_step == 2
    again.step()


def test_wall_time_continues_across_resume(tmp_path, stories):
    run = Run("gpt2-1m", stories, batch_size=4, eval_every=0)
    run.run(2, progress=False)
    last = float(run.record.wall_time.sel(step=2))
    again = Run.resume(run.save_checkpoint(tmp_path / "c.pt"), data=stories)
    again.step()
    assert float(again.record.wall_time.sel(step=3)) > last
