"""Cognitive tasks for recurrent networks, generated locally: 2AFC with noisy evidence, delayed match-to-sample.

These are the neuroscience-style tasks of "How connectivity structure shapes rich and lazy learning"
(which uses neurogym's perceptual decision making and delayed match-to-sample); here they are generated
in milliseconds with ``numpy.random.default_rng(seed)``, so the same arguments give identical tensors.

Both return a classification :class:`Dataset`: ``x`` float ``[n, n_steps, d_in]``, ``y`` long
``[n, n_steps]`` with ``-100`` (ignored) everywhere except the response period, where it holds the
correct choice in ``{0, 1}``. Channel 0 of ``x`` is a fixation cue (1 until the response period), so a
network knows when to answer. Use ``models.rnn(d_in=info["d_in"], d_out=2)``.

>>> from workbench import data
>>> import workbench.data.cognitive  # registers the tasks (workbench.regime imports it too)
>>> ds = data.load("two_afc", n_train=64, n_val=16)
>>> ds.train.tensors["x"].shape, ds.info["d_in"]
(torch.Size([64, 20, 3]), 3)
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .base import Dataset, Split


def _check(name, value, low):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer ≥ {low}, got {value!r}.")
    return int(value)


def _dataset(name, x, y, n_train, info) -> Dataset:
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    splits = {"train": Split({"x": xt[:n_train], "y": yt[:n_train]}, "train", shuffle=True),
              "val": Split({"x": xt[n_train:], "y": yt[n_train:]}, "val", shuffle=False)}
    return Dataset(name, splits, task="classification", info=info)


def two_afc(n_train: int = 512, n_val: int = 128, n_steps: int = 20, fixation_steps: int = 4, response_steps: int = 4,
            coherences: tuple = (0.05, 0.1, 0.2, 0.4), noise: float = 0.5, seed: int = 0) -> Dataset:
    """Two-alternative forced choice: report which of two noisy evidence channels is stronger on average.

    Channels ``[fixation, evidence_0, evidence_1]``; during the stimulus period evidence_c =
    ``0.5 ± coherence/2 + noise·ε`` (+ for the correct side ``c``). The label is the correct side,
    required during the last ``response_steps``.
    """
    n_train, n_val, n_steps = _check("n_train", n_train, 1), _check("n_val", n_val, 1), _check("n_steps", n_steps, 3)
    fixation_steps, response_steps = _check("fixation_steps", fixation_steps, 0), _check("response_steps", response_steps, 1)
    if fixation_steps + response_steps >= n_steps:
        raise ConfigError(f"fixation_steps + response_steps ({fixation_steps}+{response_steps}) must leave a stimulus period in n_steps={n_steps}.")
    coh = np.asarray(coherences, dtype=float)
    if coh.ndim != 1 or coh.size == 0 or (coh < 0).any():
        raise ConfigError(f"coherences must be a non-empty list of numbers ≥ 0, got {coherences!r}.")
    if noise < 0:
        raise ConfigError(f"noise must be ≥ 0, got {noise}.")
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    side = rng.integers(0, 2, n)  # [n] correct choice
    c = coh[rng.integers(0, coh.size, n)]  # [n]
    x = np.zeros((n, n_steps, 3))
    stim = slice(fixation_steps, n_steps - response_steps)
    x[:, : n_steps - response_steps, 0] = 1.0
    sign = np.where(side == 0, 1.0, -1.0)[:, None]  # [n, 1]
    t_stim = n_steps - response_steps - fixation_steps
    x[:, stim, 1] = 0.5 + sign * c[:, None] / 2 + noise * rng.standard_normal((n, t_stim))
    x[:, stim, 2] = 0.5 - sign * c[:, None] / 2 + noise * rng.standard_normal((n, t_stim))
    y = np.full((n, n_steps), -100)
    y[:, n_steps - response_steps :] = side[:, None]
    info = {"d_in": 3, "d_out": 2, "n_steps": n_steps, "seed": seed, "n_classes": 2, "noise": float(noise),
            "coherences": [float(v) for v in coh], "encoding": "x=[fixation, evidence_0, evidence_1]; y=-100 except response"}
    return _dataset("two_afc", x, y, n_train, info)


def delayed_match(n_train: int = 512, n_val: int = 128, n_stimuli: int = 4, sample_steps: int = 3, delay_steps: int = 6,
                  test_steps: int = 3, response_steps: int = 3, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Delayed match-to-sample: a sample stimulus, a delay, a test stimulus; answer 1 if they match, else 0.

    Channels ``[fixation, stimulus_1 … stimulus_K]`` (one-hot stimuli plus Gaussian noise of std
    ``noise`` on every stimulus channel at every step); half the trials match.
    """
    n_train, n_val = _check("n_train", n_train, 1), _check("n_val", n_val, 1)
    k = _check("n_stimuli", n_stimuli, 2)
    s, d, t, r = (_check("sample_steps", sample_steps, 1), _check("delay_steps", delay_steps, 0),
                  _check("test_steps", test_steps, 1), _check("response_steps", response_steps, 1))
    if noise < 0:
        raise ConfigError(f"noise must be ≥ 0, got {noise}.")
    rng = np.random.default_rng(seed)
    n, n_steps = n_train + n_val, s + d + t + r
    sample = rng.integers(0, k, n)
    match = rng.integers(0, 2, n)
    other = (sample + rng.integers(1, k, n)) % k  # a different stimulus
    test = np.where(match == 1, sample, other)
    x = np.zeros((n, n_steps, 1 + k))
    x[:, : s + d + t, 0] = 1.0
    rows = np.arange(n)
    x[rows[:, None], np.arange(s)[None, :], 1 + sample[:, None]] = 1.0
    x[rows[:, None], (s + d + np.arange(t))[None, :], 1 + test[:, None]] = 1.0
    x[:, :, 1:] += noise * rng.standard_normal((n, n_steps, k))
    y = np.full((n, n_steps), -100)
    y[:, n_steps - r :] = match[:, None]
    info = {"d_in": 1 + k, "d_out": 2, "n_steps": n_steps, "seed": seed, "n_classes": 2, "noise": float(noise),
            "encoding": "x=[fixation, one-hot stimulus]; y=-100 except response (1 = match)"}
    return _dataset("delayed_match", x, y, n_train, info)


def register(datasets) -> None:
    """Register both tasks in ``datasets`` (the ``workbench.data.DATASETS`` registry), once."""
    for name, fn, help in (("two_afc", two_afc, "2-alternative forced choice on noisy evidence (RNN task)"),
                           ("delayed_match", delayed_match, "delayed match-to-sample (RNN task)")):
        if name not in datasets:
            datasets.register(name, fn, task="classification", kind="cognitive", help=help)


def _register_with_workbench() -> None:
    from . import DATASETS

    register(DATASETS)


_register_with_workbench()  # importing this module (or workbench.regime) makes data.load("two_afc") work
