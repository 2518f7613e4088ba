"""Target and oracle models for unlearning, as ``workbench.Run`` stages, cached by their settings.

1. **base** — a small LM pre-trained on the built-in ``stories`` corpus
   (:func:`workbench.finetune.pretrained_base`, itself cached);
2. **target** — the base fine-tuned on *all* facts (a :class:`workbench.Run`): the model to unlearn;
3. **oracle** — the base fine-tuned on the *retain* facts only, same recipe: the model unlearning should
   imitate (Attribute-to-Delete's view of the target of unlearning; TOFU's "retain model").

The fine-tuning data (:func:`training_split`) holds each fact twice — its answer and its paraphrase —
plus as many blocks of ``stories`` text (replay). Why: a ~1M-parameter model does not carry a fact
from one phrasing to another, so without the paraphrase the truth ratio (paraphrase vs perturbed
answers) would measure nothing; and without replay, 200 steps on facts alone erase the stories
(measured: general per-token probability 0.63 → 0.002), leaving no utility for unlearning to destroy.
Unlearning itself sees only the forget *answers*; the paraphrases test whether forgetting generalizes.

Both fine-tunings are plain ``Run`` s, so they come with records (saved next to the models) and could
be checkpointed. The two models are saved with :func:`workbench.models.save` under
``$WORKBENCH_CACHE/unlearn/<hash of the settings>/{target,oracle}`` and loaded on later calls.

>>> from workbench.unlearn import prepare                                      # doctest: +SKIP
>>> p = prepare(n_entities=40, finetune_steps=400)                            # doctest: +SKIP
>>> p.target, p.oracle, p.forget, p.retain                                    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .. import models
from ..data.base import Split
from ..errors import ConfigError
from ..record import open_record
from ..run import Run
from .facts import FactsBenchmark, general_text

FORMAT = 2  # bump when the facts or the recipe change meaning

#: Defaults: 40 entities × 4 facts; forget10 = 4 entities (16 facts). ~200 steps (batch 32, lr 3e-3) bring the answer loss below 0.01.
DEFAULTS = dict(model="gpt2-1m", n_entities=40, n_perturbed=3, forget_fraction=0.10, pretrain_steps=600,
                finetune_steps=200, lr=3e-3, batch_size=32, seed=0)


@dataclass
class Prepared:
    """Everything an unlearning experiment starts from."""

    bench: FactsBenchmark
    target: nn.Module
    oracle: nn.Module
    forget: Split
    retain: Split
    general: Split
    settings: dict
    path: Path
    records: dict = field(default_factory=dict)

    @property
    def forget_fraction(self) -> float:
        return self.settings["forget_fraction"]


def cache_root() -> Path:
    root = os.environ.get("WORKBENCH_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "workbench") / "unlearn"


def settings_for(**overrides) -> dict:
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"Unknown unlearning pipeline setting(s) {unknown}; known: {', '.join(DEFAULTS)}.")
    s = {**DEFAULTS, **{k: v for k, v in overrides.items() if v is not None}}
    for key in ("n_entities", "finetune_steps", "batch_size", "pretrain_steps"):
        if not isinstance(s[key], int) or s[key] < 1:
            raise ConfigError(f"{key} must be a positive integer, got {s[key]!r}.")
    return s


def cache_path(cache_dir=None, **overrides) -> Path:
    s = settings_for(**overrides)
    key = hashlib.sha256(json.dumps({**s, "format": FORMAT}, sort_keys=True).encode()).hexdigest()[:12]
    return (Path(cache_dir).expanduser() if cache_dir else cache_root()) / f"{s['model']}-{key}"


def base_model(s: dict, device: str = "auto", progress: bool = False) -> nn.Module:
    """The pre-trained base (``workbench.finetune.pretrained_base``; a plain stories Run if it is missing)."""
    try:
        from ..finetune.pretrain import pretrained_base
    except ImportError:  # the fine-tuning package is optional for this lab
        pretrained_base = None
    if pretrained_base is not None:
        return pretrained_base(s["model"], steps=s["pretrain_steps"], seed=s["seed"], device=device, progress=progress)
    from .. import data

    run = Run(s["model"], data.load("stories", n_docs=1000), max_steps=s["pretrain_steps"], lr=3e-3, batch_size=16,
              schedule="cosine", warmup_steps=20, eval_every=0, seed=s["seed"], device=device, label="base")
    run.run(progress=progress)
    return run.model


def training_split(bench: FactsBenchmark, which: str, forget_fraction: float, replay_seed: int = 2) -> Split:
    """Answers + paraphrases of the ``which`` facts, plus as many ``stories`` blocks (replay), one width."""
    import torch

    from ..data import load

    ids = bench.ids(which, forget_fraction)
    parts = [bench.tensors(ids, "answer"), bench.tensors(ids, "paraphrase")]
    n = 2 * len(ids)
    stories = load("stories", n_docs=max(20, n // 2), n_val_docs=0, block_size=bench.max_length, seed=replay_seed,
                   tokenizer=bench.tokenizer).train
    take = stories.take(range(min(n, len(stories))))
    keys = ("input_ids", "attention_mask", "labels")
    tensors = {k: torch.cat([parts[0][k], parts[1][k], take[k]]) for k in keys}  # [2n + n_replay, max_length]
    return Split(tensors, name=f"finetune-{which}")


def _fine_tune(base: nn.Module, bench: FactsBenchmark, which: str, s: dict, device: str, progress: bool) -> Run:
    import copy

    from ..data.base import Dataset

    model = copy.deepcopy(base)
    data = Dataset(f"facts-{which}+replay", {"train": training_split(bench, which, s["forget_fraction"])}, task="lm",
                   info=bench.describe(which=which, forget_fraction=s["forget_fraction"], paraphrases=True, replay="stories"),
                   tokenizer=bench.tokenizer)
    run = Run(model, data, max_steps=s["finetune_steps"], lr=s["lr"],
              batch_size=s["batch_size"], schedule="cosine", warmup_steps=min(20, s["finetune_steps"] // 10),
              eval_every=0, seed=s["seed"], device=device, label=which, log_every=50)
    run.run(progress=progress)
    return run


def prepare(cache_dir=None, retrain: bool = False, device: str = "auto", progress: bool = False, **settings) -> Prepared:
    """Build (or load from the cache) the benchmark, the target and the oracle.

    Parameters
    ----------
    cache_dir : root of the cache (default ``$WORKBENCH_CACHE/unlearn``).
    retrain : ignore a cached target/oracle and train them again.
    **settings : overrides of :data:`DEFAULTS` (``n_entities``, ``forget_fraction``, ``finetune_steps`` …).
    """
    s = settings_for(**settings)
    bench = FactsBenchmark(s["n_entities"], s["n_perturbed"], s["seed"])
    forget = bench.split("forget", s["forget_fraction"])  # validates forget_fraction before any training
    retain = bench.split("retain", s["forget_fraction"])
    path = cache_path(cache_dir, **settings)
    records = {}
    done = all((path / n / "config.json").exists() for n in ("target", "oracle"))
    if retrain or not done:
        path.mkdir(parents=True, exist_ok=True)
        base = base_model(s, device=device, progress=progress)
        for name, which in (("target", "all"), ("oracle", "retain")):
            run = _fine_tune(base, bench, which, s, device, progress)
            run.save_record(path / f"{name}.nc")
            models.save(run.model.cpu(), path / name, run_id=run.run_id)
        (path / "settings.json").write_text(json.dumps(s, indent=1))
    target = models.load(str(path / "target"))
    oracle = models.load(str(path / "oracle")).eval().requires_grad_(False)
    for name in ("target", "oracle"):
        if (path / f"{name}.nc").exists():
            records[name] = open_record(path / f"{name}.nc")
    general = general_text(tokenizer=bench.tokenizer)
    return Prepared(bench, target, oracle, forget, retain, general, s, path, records)


__all__ = ["prepare", "Prepared", "DEFAULTS", "cache_path", "settings_for", "base_model", "training_split"]
