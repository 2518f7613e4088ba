"""Models: presets built from configs, Hugging Face load/save, and small theory models.

>>> from workbench import models
>>> m = models.build("gpt2-1m")
>>> sum(p.numel() for p in m.parameters()) < 2_000_000
True
"""

from __future__ import annotations

import os

from ..errors import ConfigError, unknown_name
from .hf import load, save
from .presets import PRESETS, build
from .theory import MLP, ReLURNN, mlp, rnn

BUILDERS = {"mlp": mlp, "rnn": rnn}


def get(name_or_path: str, data=None, **kwargs):
    """A preset name, a theory builder name (``mlp``/``rnn``) or a local directory / hub id."""
    if name_or_path in PRESETS:
        return build(name_or_path, data=data, **kwargs)
    if name_or_path in BUILDERS:
        return BUILDERS[name_or_path](**kwargs)
    if os.path.exists(os.path.expanduser(name_or_path)) or "/" in name_or_path:
        return load(name_or_path, **kwargs)
    raise unknown_name("model preset", name_or_path, PRESETS.names() + list(BUILDERS),
                       "Or pass a local model directory saved with models.save().")


def from_description(desc: dict, data=None):
    """Rebuild a model from ``model.workbench_origin`` (as stored in records and checkpoints)."""
    if "preset" in desc:
        return build(desc["preset"], data=data, vocab_size=desc.get("vocab_size"), seed=desc.get("seed", 0),
                     **desc.get("overrides", {}))
    if desc.get("builder") in BUILDERS:
        kw = {k: v for k, v in desc.items() if k not in ("builder", "class", "parameters", "trainable")}
        return BUILDERS[desc["builder"]](**kw)
    if "path" in desc:
        return load(desc["path"])
    if "hub_id" in desc:
        return load(desc["hub_id"])
    raise ConfigError(f"Cannot rebuild the model from its description {desc}: pass model= explicitly.")


__all__ = ["PRESETS", "build", "load", "save", "get", "from_description", "MLP", "ReLURNN", "mlp", "rnn"]
