"""Relearning attack: fine-tune the unlearned model on a few forget examples and see what comes back.

"Unlearned" knowledge that returns after a handful of steps on a few of the forgotten examples was
hidden, not removed (Hu et al., 2024; Fan et al., 2025). :class:`Relearn` is a plain
:class:`workbench.Run` on the first ``n_examples`` forget facts (next-token loss on the answers);
:func:`relearn_attack` runs it on a *copy* of the model and reports forget metrics before and after, both
on the facts it relearned and on the held-out forget facts it never saw during the attack.

>>> # ds = relearn_attack(unlearned, bench, forget_fraction=0.1, n_examples=4, steps=10)
"""

from __future__ import annotations

import copy

import param
import xarray as xr

from ..data.base import Dataset
from ..errors import ConfigError
from ..run import Run
from .evals import answer_prob, rouge_recall
from .facts import FactsBenchmark


class Relearn(Run):
    """Fine-tune on ``n_examples`` forget facts (the attacker's data) for ``max_steps`` steps."""

    n_examples = param.Integer(default=4, bounds=(1, None), doc="Forget facts the attacker trains on.")
    forget_fraction = param.Number(default=0.10, bounds=(0, 1), doc="Which forget split.")
    lr = param.Number(default=1e-3, bounds=(0, None), inclusive_bounds=(False, True), doc="Attack learning rate.")
    batch_size = param.Integer(default=4, bounds=(1, None), doc="Examples per attack step.")
    max_steps = param.Integer(default=10, bounds=(1, None), doc="Attack steps.")
    eval_every = param.Integer(default=0, bounds=(0, None), doc="Held-out evaluation (off).")

    def __init__(self, model, bench: FactsBenchmark, **params):
        n = params.get("n_examples", type(self).param["n_examples"].default)
        frac = params.get("forget_fraction", type(self).param["forget_fraction"].default)
        ids = bench.forget_ids(frac)
        if not isinstance(n, int) or not 1 <= n <= len(ids):
            raise ConfigError(f"n_examples must be between 1 and the {len(ids)} forget facts, got {n!r}.")
        self.bench = bench
        self.attack_ids = ids[:n]
        self.heldout_ids = ids[n:]
        split = bench.split("all", with_refusal=False).subset(self.attack_ids, name="relearn")
        super().__init__(model, Dataset("relearn", {"train": split}, task="lm"), **params)


def relearn_attack(model, bench: FactsBenchmark, forget_fraction: float = 0.10, n_examples: int = 4, steps: int = 10,
                   lr: float = 1e-3, batch_size: int = 4, seed: int = 0, rouge: bool = True, device: str = "cpu",
                   label: str = "") -> xr.Dataset:
    """Attack a copy of ``model``; return before/after forget metrics (``attacked`` and ``heldout`` facts).

    Variables: ``prob_<subset>_before/after`` (mean per-token answer probability), ``rouge_<subset>_…``
    (with ``rouge``), and ``prob_forget_after`` / ``prob_forget_before`` over all forget facts.
    """
    attacked = copy.deepcopy(model).train().requires_grad_(True)
    run = Relearn(attacked, bench, n_examples=n_examples, forget_fraction=forget_fraction, max_steps=steps, lr=lr,
                  batch_size=batch_size, seed=seed, device=device, label=label or "relearn")
    subsets = {"attacked": run.attack_ids, "heldout": run.heldout_ids, "forget": run.attack_ids + run.heldout_ids}

    def measure(m, when):
        out = {}
        for name, ids in subsets.items():
            if not ids:
                continue
            out[f"prob_{name}_{when}"] = float(answer_prob(m, bench, ids).mean())
            if rouge:
                out[f"rouge_{name}_{when}"] = float(rouge_recall(m, bench, ids).mean())
        return out

    before = measure(model, "before")
    run.run(progress=False)
    after = measure(run.model, "after")
    ds = xr.Dataset({k: v for k, v in {**before, **after}.items()})
    ds.attrs.update(n_examples=n_examples, steps=steps, lr=lr, forget_fraction=forget_fraction,
                    relearn_run=run.run_id)
    return ds
