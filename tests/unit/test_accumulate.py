"""Gradient accumulation, activation checkpointing and torch.compile as declared Run parameters (#13 item 2)."""

from __future__ import annotations

import pytest
import torch

from workbench import Run, data, execution, models
from workbench.errors import ConfigError

# Same global batch, cut into micro-batches: the sums are done in a different order, so fp32 results agree to
# rounding, not bit for bit. After 3 AdamW steps on gpt2-1m the largest weight difference is ~1e-7.
LOSS_TOL = 1e-5
WEIGHT_TOL = 1e-5


def _train(tiny_run, steps=3, **params):
    run = tiny_run(batch_size=8, lr=3e-3, **params)  # the gpt2-1m preset has dropout off
    losses = [run.step()["loss"] for _ in range(steps)]
    return run, losses


def _max_weight_diff(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def test_four_micro_batches_equal_one_batch(tiny_run):
    whole, whole_losses = _train(tiny_run)
    accum, accum_losses = _train(tiny_run, grad_accum_steps=4)
    assert accum_losses == pytest.approx(whole_losses, abs=LOSS_TOL)
    assert _max_weight_diff(whole, accum) < WEIGHT_TOL
    # the grad norm (clipped against) is that of the whole batch too
    assert accum.history.latest("grad_norm") == pytest.approx(whole.history.latest("grad_norm"), rel=1e-4)
    # and not the same as training on a quarter of the batch: the test can tell them apart
    quarter = tiny_run(batch_size=2, lr=3e-3)
    for _ in range(3):
        quarter.step()
    assert _max_weight_diff(whole, quarter) > 100 * WEIGHT_TOL


def test_batch_size_must_split_into_micro_batches(tiny_run):
    with pytest.raises(ConfigError, match="batch_size 6 is not divisible by grad_accum_steps 4"):
        tiny_run(batch_size=6, grad_accum_steps=4)
    run = tiny_run(batch_size=8, grad_accum_steps=4)
    run.grad_accum_steps = 3  # stopped: allowed, refused at the next step before anything changes
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    with pytest.raises(ConfigError, match="multiple of 3"):
        run.step()
    assert run.global_step == 0 and all(torch.equal(v, run.model.state_dict()[k]) for k, v in before.items())


def test_new_params_are_locked_while_training(tiny_run):
    run = tiny_run(max_steps=10_000)
    run.start()
    try:
        for name, value in (("grad_accum_steps", 2), ("activation_checkpointing", True), ("compile", True),
                            ("strategy", "ddp")):
            with pytest.raises(ConfigError, match=f"{name} cannot change while Run is training"):
                setattr(run, name, value)
    finally:
        run.stop()
    assert set(Run.LOCKED_WHILE_TRAINING) >= {"grad_accum_steps", "activation_checkpointing", "compile", "strategy"}
    assert all(name in Run.LOCK_REASONS for name in Run.LOCKED_WHILE_TRAINING)


def test_activation_checkpointing_same_result_and_refused_without_support(tiny_run):
    plain, plain_losses = _train(tiny_run, steps=2)
    ckpt, ckpt_losses = _train(tiny_run, steps=2, activation_checkpointing=True)
    assert execution.is_checkpointing(ckpt.model)
    assert ckpt_losses == pytest.approx(plain_losses, abs=LOSS_TOL)
    assert _max_weight_diff(plain, ckpt) < WEIGHT_TOL
    ckpt.activation_checkpointing = False
    ckpt.step()
    assert not execution.is_checkpointing(ckpt.model)
    teacher = data.load("teacher_student", n_train=64, n_val=16)
    with pytest.raises(ConfigError, match="activation_checkpointing needs a model with gradient_checkpointing_enable"):
        Run(models.mlp(d_in=16), teacher, activation_checkpointing=True)


def test_config_records_the_new_params(tiny_run):
    run = tiny_run(grad_accum_steps=2)
    run.step()
    config = run.config()
    assert config["grad_accum_steps"] == 2 and config["compile"] is False and config["activation_checkpointing"] is False


@pytest.mark.slow
def test_compile_trains_like_eager(tiny_run):
    eager, eager_losses = _train(tiny_run, steps=2)
    compiled, compiled_losses = _train(tiny_run, steps=2, compile=True)
    assert compiled.forward_model is not compiled.model and type(compiled.model).__name__ == "GPT2LMHeadModel"
    assert compiled_losses == pytest.approx(eager_losses, abs=1e-4)
