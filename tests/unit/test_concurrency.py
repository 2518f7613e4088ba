"""Concurrent runs in one process: each run's randomness is its own (workbench.rng)."""

from __future__ import annotations

import threading

import torch

from workbench import Run, models
from workbench.rng import TORCH_RNG_LOCK

STEPS = 8


def _run(stories, seed):
    model = models.build("gpt2-1m", data=stories, resid_pdrop=0.3, embd_pdrop=0.3)
    return Run(model, stories, batch_size=4, eval_every=0, log_every=1, seed=seed, lr=3e-3)


def _weights(run):
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def test_two_concurrent_runs_with_dropout_equal_their_solo_runs(stories):
    solo = {}
    for seed in (1, 2):
        run = _run(stories, seed)
        run.run(STEPS, progress=False)
        solo[seed] = (_weights(run), run.record.loss.values.copy())

    # The main thread keeps drawing from the global torch RNG (holding the lock, as documented) while
    # both runs train: its numbers must be the ones it would draw with no run around.
    torch.manual_seed(1234)
    expected_main = torch.rand(200)
    torch.manual_seed(1234)
    a, b = _run(stories, 1), _run(stories, 2)
    a.start(STEPS)
    b.start(STEPS)
    drawn = []
    while a.running or b.running or len(drawn) < 200:
        with TORCH_RNG_LOCK:
            if len(drawn) < 200:
                drawn.append(torch.rand(1))
        threading.Event().wait(0.001)
    a.wait(), b.wait()
    for seed, run in ((1, a), (2, b)):
        weights, losses = solo[seed]
        assert (run.record.loss.values == losses).all(), seed
        assert all(torch.equal(v, weights[k]) for k, v in _weights(run).items()), seed
    assert torch.equal(torch.cat(drawn), expected_main)
