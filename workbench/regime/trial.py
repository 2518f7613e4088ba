"""One rich/lazy training trial as a pure function of a config: what a sweep maps over a grid.

:func:`rich_lazy_trial` builds a ReLU RNN on a cognitive task, sets its recurrent init (Gaussian of gain
``1.25 · scale``, then SVD-truncated to ``rank`` at equal Frobenius norm, or the task-``aligned``
rank-``rank`` init), trains it with SGD + momentum (the authors' optimizer) and returns the regime
metrics measured against the init: relative weight change of W_rec, tangent-kernel alignment w.r.t.
W_rec, representation alignment (uncentered, CKA) of the final hidden state, effective ranks (names from
:mod:`workbench.vocabulary`: ``delta_rel_norm``, ``effective_rank_init``, ``delta_effective_rank``). It is a
module-level function of plain values, so Dask and process pools can pickle it.

>>> m = rich_lazy_trial({"n_hidden": 16, "rank": 2, "steps": 3, "n_train": 32, "n_probe": 8})
>>> sorted(m)[:3]
['accuracy', 'delta_effective_rank', 'delta_rel_norm']
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError

DEFAULTS = dict(task="two_afc", init=None, n_hidden=64, rank=0, alignment=None, scale=1.0, gain=1.25, seed=0, data_seed=0,
                steps=300, lr=0.003, momentum=0.9, batch_size=32, n_train=512, n_probe=32, grad_clip=0.0, threads=None)
"""Defaults: rank 0 = full rank; alignment None = plain low-rank (a number in [0, 1] = the ``aligned`` recipe).
``init`` (optional) names the condition and overrides both: ``"full"`` (rank ignored), ``"low_rank"``
(``rank``, not aligned) or ``"aligned"`` (``rank``, ``alignment`` or 1.0) — handy as one sweep dim."""

INITS = ("full", "low_rank", "aligned")


def build_trial(config: dict):
    """The model, dataset and probes of a trial (exposed so views and notebooks can reuse the setup)."""
    from .. import data as data_mod
    from ..data import cognitive  # noqa: F401  (registers the tasks)
    from ..init import apply
    from ..models import rnn
    from .kernel import KernelAlignment
    from .representation import RepresentationAlignment
    from .weight_change import WeightChange

    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"Unknown trial setting(s) {unknown}; known: {', '.join(DEFAULTS)}.")
    c = {**DEFAULTS, **config}
    if c["init"] is not None:
        if c["init"] not in INITS:
            raise ConfigError(f"init must be one of {INITS} (or None), got {c['init']!r}.")
        if c["init"] == "full":
            c["rank"], c["alignment"] = 0, None
        elif c["init"] == "low_rank":
            c["alignment"] = None
        elif c["alignment"] is None:
            c["alignment"] = 1.0
    ds = data_mod.load(c["task"], n_train=int(c["n_train"]), n_val=max(int(c["n_probe"]), 2), seed=int(c["data_seed"]))
    model = rnn(d_in=ds.info["d_in"], n_hidden=int(c["n_hidden"]), d_out=ds.info["d_out"], seed=int(c["seed"]))
    apply(model, "gaussian", include="^weight_rec$", gain=float(c["gain"]) * float(c["scale"]), seed=int(c["seed"]))
    rank = int(c["rank"] or 0)
    if c["alignment"] is not None and not (isinstance(c["alignment"], float) and math.isnan(c["alignment"])):
        apply(model, "aligned", data=ds, include="^weight_rec$", rank=rank or int(c["n_hidden"]),
              alignment=float(c["alignment"]), seed=int(c["seed"]))
    elif rank:
        apply(model, "low_rank", include="^weight_rec$", rank=rank)
    probe = ds.split("val").take(range(int(c["n_probe"])))
    every = max(1, int(c["steps"]))
    probes = [WeightChange(include="^weight_rec$", every=every,
                           variables=["delta_rel_norm", "effective_rank_init", "delta_effective_rank"]),
              KernelAlignment(params=["weight_rec"], batch=probe, output="last", every=every),
              RepresentationAlignment(batch=probe, every=every)]
    return c, model, ds, probes


def rich_lazy_trial(config: dict) -> dict:
    """Train one configuration and return its regime metrics (floats)."""
    from ..run import Run

    c, model, ds, probes = build_trial(config)
    if c["threads"]:
        torch.set_num_threads(int(c["threads"]))
    run = Run(model, ds, probes=probes, optimizer="sgd", lr=float(c["lr"]), momentum=float(c["momentum"]),
              batch_size=int(c["batch_size"]), max_steps=int(c["steps"]), seed=int(c["seed"]),
              grad_clip=float(c["grad_clip"]), eval_every=0, log_every=max(1, int(c["steps"])), device="cpu")
    run.run(progress=False)
    rec = run.history
    with torch.no_grad():
        val = ds.split("val").take(range(len(ds.split("val"))))
        loss, metrics = ds.loss(model, val)
    return {
        "loss": float(rec.latest("loss")), "val_loss": float(loss), "accuracy": float(metrics.get("accuracy", math.nan)),
        "delta_rel_norm": float(rec.latest("delta_rel_norm").sel(matrix="weight_rec")),
        "kernel_alignment": float(rec.latest("kernel_alignment")),
        "kernel_task_alignment": float(rec.latest("kernel_task_alignment")),
        "kernel_task_alignment_init": float(rec.latest("kernel_task_alignment_init")),
        "rep_alignment": float(rec.latest("rep_alignment")), "rep_cka": float(rec.latest("rep_cka")),
        "effective_rank_init": float(rec.latest("effective_rank_init").sel(matrix="weight_rec")),
        "delta_effective_rank": float(rec.latest("delta_effective_rank").sel(matrix="weight_rec")),
    }
