"""The stages behind the dashboard's tabs: what each lab builds, at a size that starts in seconds.

Each builder takes the server's :class:`~widgets.app.DashboardConfig` and returns the tab's stages
(``{label: stage}``), built from the core library only — no view code here: every stage is shown with
``widgets.view(stage)``. Builders run in a worker thread when a session first opens the tab. What is
expensive and read-only is built once per server process and shared (:func:`shared`): tokenized
datasets, the pre-trained base (``workbench.finetune.pretrained_base``, cached on disk too) and the
unlearning target/oracle (``workbench.unlearn.prepare``, cached on disk); every session gets fresh
copies of the models it trains.

>>> sorted(LABS)
['Fine-tuning', 'Rich/lazy', 'Spectra', 'Training', 'Unlearning']
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Callable

from workbench import Run, data as wb_data

_SHARED: dict = {}
_SHARED_LOCKS: dict = {}
_GUARD = threading.Lock()


def shared(key, build: Callable):
    """``build()`` once per server process (concurrent callers wait for the first); the result is shared read-only."""
    with _GUARD:
        lock = _SHARED_LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _SHARED:
            _SHARED[key] = build()
        return _SHARED[key]


def corpus(name: str, n_docs: int, **options):
    """A built-in dataset, tokenized once per process."""
    return shared(("data", name, n_docs, tuple(sorted(options.items()))),
                  lambda: wb_data.load(name, n_docs=n_docs, n_val_docs=max(20, n_docs // 10), **options))


def base_model(config):
    """The pre-trained base of the fine-tuning and unlearning tabs (trained once per machine, then cached)."""
    from workbench.finetune import pretrained_base

    return shared(("base", config.model, config.pretrain_steps),
                  lambda: pretrained_base(config.model, steps=config.pretrain_steps))


@dataclass
class Lab:
    """One tab: its title, a one-line description, its builder, and what may take long the first time."""

    title: str
    intro: str
    build: Callable  # build(config, slots) -> {label: stage}
    first_time: str = ""


def training(config, slots) -> dict:
    return {"run": Run(config.model, corpus(config.dataset, config.n_docs), batch_size=config.batch_size,
                       max_steps=config.max_steps, log_every=5, eval_every=25, eval_batches=2, label="training")}


def spectra(config, slots) -> dict:
    from workbench.regime import WeightChange
    from workbench.spectra import SpectraProbe

    run = Run(config.model, corpus(config.dataset, config.n_docs), batch_size=config.batch_size,
              max_steps=config.max_steps, log_every=5, eval_every=0, label="spectra")
    run.add_probe(SpectraProbe(every=config.probe_every))
    run.add_probe(WeightChange(every=config.probe_every))
    return {"run": run}


def fine_tuning(config, slots) -> dict:
    from workbench.finetune import FineTune, fresh_copy

    base = base_model(config)
    task = corpus("recipes", config.finetune_docs)
    forget = corpus("stories", 20)
    common = dict(batch_size=config.batch_size, max_steps=config.finetune_steps, eval_every=config.probe_every,
                  eval_batches=2, intruders_every=config.probe_every, log_every=5, seed=0)
    return {"full": FineTune(fresh_copy(base), task, forget_data=forget, method="full", lr=5e-4, label="full", **common),
            "LoRA r=8": FineTune(fresh_copy(base), task, forget_data=forget, method="lora", rank=8, lr=1e-2,
                                 label="lora-r8", **common)}


def rich_lazy(config, slots) -> dict:
    from workbench.regime import InitLab

    class ServedInitLab(InitLab):
        """The init lab, asking the server for a training slot before each point (it has no loop callbacks)."""

        def start(self):
            held = self in slots.active()  # a point still training keeps its slot if this start is refused
            slots.claim(self)
            try:
                return super().start()
            except BaseException:
                if not held:
                    slots.release(self)
                raise

    return {"lab": ServedInitLab(n_hidden=config.init_hidden, steps=config.init_steps, n_train=128, n_probe=16)}


def prepared_unlearning(config):
    """The facts benchmark with its target and oracle models (built once per machine, then cached)."""
    from workbench.unlearn import prepare

    return shared(("unlearn", config.model, config.pretrain_steps, config.facts_entities, config.facts_steps),
                  lambda: prepare(model=config.model, n_entities=config.facts_entities,
                                  pretrain_steps=config.pretrain_steps, finetune_steps=config.facts_steps))


def unlearning(config, slots) -> dict:
    from workbench.unlearn import Unlearn, UnlearnProbe

    prep = prepared_unlearning(config)
    probe = UnlearnProbe(prep.bench, oracle=prep.oracle, general=prep.general, every=5,
                         forget_fraction=prep.forget_fraction)
    return {"unlearn": Unlearn(copy.deepcopy(prep.target), prep.forget, prep.retain, probes=[probe],
                               method=config.unlearn_method, lr=3e-4, batch_size=8, max_steps=config.unlearn_steps,
                               grad_clip=1.0, label=config.unlearn_method)}


def relearn(config, unlearned) -> Run:
    """A relearning attack on a copy of the unlearned model (a live stage, with the same probe)."""
    from workbench.unlearn import Relearn, UnlearnProbe

    prep = prepared_unlearning(config)
    model = copy.deepcopy(unlearned.model).train().requires_grad_(True)
    probe = UnlearnProbe(prep.bench, oracle=prep.oracle, general=prep.general, every=1,
                         forget_fraction=prep.forget_fraction)
    stage = Relearn(model, prep.bench, forget_fraction=prep.forget_fraction, n_examples=4, max_steps=10, lr=1e-3,
                    label=f"relearn-{unlearned.label}")
    stage.add_probe(probe)
    return stage


LABS: dict[str, Lab] = {lab.title: lab for lab in [
    Lab("Training", "A small language model on the built-in `stories` corpus: Step, Start, Stop, change its "
                    "parameters.", training),
    Lab("Spectra", "The same kind of run with spectra and intruder probes (effective/stable rank, intruder "
                   "dimensions against W0) and the weight change, measured every few steps.", spectra),
    Lab("Fine-tuning", "Full fine-tuning vs LoRA (r = 8) of a base pre-trained on `stories`, on `recipes`: the "
                       "task loss, the forgetting of `stories`, and the intruder dimensions per matrix.", fine_tuning,
        first_time="The base model is pre-trained once per machine and cached (about a minute the first time)."),
    Lab("Rich/lazy", "The init lab: dial the recurrent init (scale, rank, alignment), preview its spectrum, train a "
                     "point and place it on the rich/lazy map.", rich_lazy),
    Lab("Unlearning", "The fictitious-facts benchmark: unlearn the forget facts from the fine-tuned target, watch "
                      "forget/retain probabilities, then Relearn to see what comes back.", unlearning,
        first_time="The target and oracle models are trained once per machine and cached (a minute or two the "
                   "first time)."),
]}
