"""A pre-trained base model, offline: train a small causal LM on a built-in corpus once, cache it.

Fine-tuning experiments need a base that already knows *something*, so that forgetting can be
measured. ``pretrained_base("gpt2-1m")`` trains the preset on ``stories`` (``corpus=`` any built-in text
corpus, e.g. the real ``python_docs``) with a plain :class:`workbench.Run` (a few minutes on 2 CPU cores
at the defaults), saves it with
:func:`workbench.models.save` (atomic folder rename) under

    ``$WORKBENCH_CACHE/bases/<preset>-<hash of the settings>`` (default ``~/.cache/workbench/bases/…``)

and on later calls loads that folder instead of training again. Anything that is not a preset — a
local model folder or a Hugging Face hub id — is loaded with :func:`workbench.models.load` as is.

The pre-training loss curve travels with the base (``workbench_origin["curve"]``: train loss and held-out
loss at ten evenly spaced steps), so a notebook can show that the base was trained until its curve
flattened — :func:`flattening` is the number it reports.

>>> from workbench.finetune import pretrained_base
>>> base = pretrained_base("gpt2-1m", steps=20)   # trains ~20 steps the first time, then cached  # doctest: +SKIP
>>> base.workbench_origin["pretrain"]["steps"]                                                        # doctest: +SKIP
20
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from torch import nn

from .. import data as data_mod, models
from ..errors import ConfigError

#: Defaults chosen so that gpt2-1m reaches a clearly-better-than-unigram loss on stories in ~2–4 min on
#: 2 shared cores (batch 16 × 64 tokens, ~4–8 steps/s), with a cosine schedule that ends annealed.
DEFAULTS = dict(steps=600, batch_size=16, lr=3e-3, warmup_steps=30, n_docs=2000, block_size=64, seed=0,
                vocab_size=512, corpus="stories")


def cache_root() -> Path:
    """``$WORKBENCH_CACHE/bases`` or ``~/.cache/workbench/bases``."""
    root = os.environ.get("WORKBENCH_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "workbench"
    return base / "bases"


def settings_for(preset: str, **overrides) -> dict:
    """The full settings of a pre-training (defaults + overrides); unknown names raise ``ConfigError``."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"Unknown pre-training setting(s) {unknown}; known: {', '.join(DEFAULTS)}.")
    s = {"preset": preset, **DEFAULTS, **{k: v for k, v in overrides.items() if v is not None}}
    for key in ("steps", "batch_size", "n_docs", "block_size"):
        if not isinstance(s[key], int) or s[key] < 1:
            raise ConfigError(f"Pre-training setting {key} must be a positive integer, got {s[key]!r}.")
    if not s["lr"] > 0:
        raise ConfigError(f"Pre-training lr must be > 0, got {s['lr']!r}.")
    return s


def cache_path(preset: str, cache_dir: str | os.PathLike | None = None, **overrides) -> Path:
    """Folder where the base of these settings is (or will be) cached."""
    s = settings_for(preset, **overrides)
    key = hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir).expanduser() if cache_dir else cache_root()
    return root / f"{preset}-{key}"


def pretrain_data(corpus: str = "stories", n_docs: int = 2000, block_size: int = 64, seed: int = 0,
                  vocab_size: int = 512, n_val_docs: int = 200):
    """The pre-training dataset (the built-in corpus, shared tokenizer).

    ``n_docs``/``n_val_docs`` apply to the generated corpora; the real ones (``python_docs``, ``python_code``)
    always use all of their text (their own defaults), so ``n_docs`` is ignored for them.
    """
    options = dict(block_size=block_size, seed=seed, vocab_size=vocab_size)
    accepted = data_mod.options_of(data_mod.DATASETS.get(corpus)) if corpus in data_mod.DATASETS else {}
    if "n_docs" in accepted:
        options.update(n_docs=n_docs, n_val_docs=n_val_docs)
    return data_mod.load(corpus, **options)


def flattening(origin: dict) -> float | None:
    """How much the held-out pre-training loss still fell over the last 30 % of the steps, relative to the loss.

    ``(loss at 70 % of training − final loss) / final loss`` from ``origin["curve"]`` (a base from
    :func:`pretrained_base`); ``None`` for a base without a recorded curve. A few percent means the curve
    has flattened (part of that is the cosine schedule's final annealing).

    >>> flattening({"curve": {"step": [0, 70, 100], "val_loss": [9.0, 2.1, 2.0]}})
    0.05
    """
    curve = (origin or {}).get("curve") or {}
    steps, losses = curve.get("step") or [], curve.get("val_loss") or []
    pairs = [(s, v) for s, v in zip(steps, losses) if v is not None and v == v]
    if len(pairs) < 2:
        return None
    last_step, last = pairs[-1]
    earlier = [v for s, v in pairs if s <= 0.7 * last_step]
    return round((earlier[-1] - last) / last, 4) if earlier and last > 0 else None


def pretrained_base(model: str = "gpt2-1m", cache_dir: str | os.PathLike | None = None, retrain: bool = False,
                    device: str = "auto", progress: bool = False, **settings) -> nn.Module:
    """A pre-trained causal LM: a preset trained on ``stories`` (cached), or any model folder / hub id.

    Parameters
    ----------
    model : a preset name (``gpt2-1m``, ``llama-1m``, …) to pre-train, or a local folder / HF hub id to load.
    cache_dir : where bases are cached (default :func:`cache_root`).
    retrain : train again even if a cached base exists (the cache is replaced atomically).
    device : training device for a preset (``auto`` = CUDA if present).
    **settings : overrides of :data:`DEFAULTS` (``steps``, ``batch_size``, ``lr``, ``n_docs`` …).

    Returns
    -------
    The model in train mode on the CPU, with ``workbench_origin`` recording the path and the settings.
    """
    if model not in models.PRESETS:
        if settings:
            raise ConfigError(f"Pre-training settings {sorted(settings)} only apply to presets "
                              f"({', '.join(models.PRESETS.names())}); {model!r} is loaded as is.")
        return models.get(model)
    s = settings_for(model, **settings)
    path = cache_path(model, cache_dir, **settings)
    if path.is_dir() and (path / "config.json").exists() and not retrain:
        base = models.load(str(path))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        base = _train(s, device=device, progress=progress)
        models.save(base, path)
        base = models.load(str(path))
    base.workbench_origin = {**base.workbench_origin, "pretrain": s}
    return base


def _train(s: dict, device: str = "auto", progress: bool = False) -> nn.Module:
    from ..run import Run

    ds = pretrain_data(s["corpus"], s["n_docs"], s["block_size"], s["seed"], s["vocab_size"])
    model = models.build(s["preset"], data=ds, seed=s["seed"])
    every = max(1, s["steps"] // 10)  # ten held-out evaluations: the curve saved with the base
    run = Run(model, ds, lr=s["lr"], batch_size=s["batch_size"], max_steps=s["steps"], schedule="cosine",
              warmup_steps=s["warmup_steps"], min_lr_ratio=0.1, seed=s["seed"], device=device, eval_every=every,
              eval_batches=8, label=f"pretrain {s['preset']}")
    run.run(progress=progress)
    model = run.model.cpu()
    rec = run.record
    val = rec.val_loss.dropna("step") if "val_loss" in rec else None
    curve = {"step": [int(x) for x in val.step.values] if val is not None else [],
             "val_loss": [round(float(x), 4) for x in val.values] if val is not None else [],
             "loss": [round(float(rec.loss.sel(step=int(x)).item()), 4) if int(x) in rec.step else None
                      for x in (val.step.values if val is not None else [])]}
    # No "preset" key: a saved base must be rebuilt from its folder, not as a fresh random preset.
    model.workbench_origin = {"pretrained_from": model.workbench_origin, "pretrain": s, "final_loss": run.loss,
                              "run_id": run.run_id, "curve": curve}
    return model
