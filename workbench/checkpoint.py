"""Checkpoints: everything a run needs to continue bit-identically, in one atomically written file.

Contents: format version, the model's parameter fingerprint (names and shapes) and ``state_dict``, the
optimizer state, the run's torch RNG streams plus Python's and NumPy's global states, the step (which
is also the data position: batch ``i`` is a pure function of ``(seed, i)``), the declared config,
the history (so the record continues), the W0 reference snapshot, run id, lineage and the model and
data descriptions (so ``Run.resume(path)`` can rebuild presets and built-in datasets by itself).

Files are loaded with ``torch.load(weights_only=True)``: a checkpoint cannot run code.
The learning-rate schedule is a pure function of the step, so it needs no state of its own.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, CorruptFileError, MissingPathError
from .matrices import fingerprint
from .snapshot import Snapshot

FORMAT = 1


def _atomic_torch_save(obj, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(run, path) -> str:
    """Write ``run``'s full state to ``path`` (temp file + rename)."""
    path = Path(path)
    if not path.parent.exists():
        raise MissingPathError(f"Cannot save the checkpoint to {str(path)!r}: the folder {str(path.parent)!r} does not exist.")
    if run.running:
        raise ConfigError("Cannot checkpoint while the run is training; stop() it first (checkpoints are taken at step boundaries).")
    run.setup()
    py_state = random.getstate()
    np_state = np.random.get_state()
    state = {
        "format": FORMAT,
        "stage": type(run).__name__,
        "run_id": run.run_id,
        "parent": run.parent,
        "global_step": run.global_step,
        "status": run.status,
        "config": run.config(),
        "model_description": run.describe_model(),
        "data_description": run.data.describe(),
        "fingerprint": fingerprint(run.model),
        "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        "optimizer": run.torch_optimizer.state_dict(),
        "rng": {
            "run_torch": run._rng_state.clone(),
            "run_cuda": None if run._cuda_rng_state is None else run._cuda_rng_state.cpu(),
            "python": [py_state[0], list(py_state[1]), py_state[2]],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        },
        "history": run.history.state_dict(),
        "reference": run.reference.state_dict() if run.reference is not None else None,
        "extra": run.checkpoint_extra() if hasattr(run, "checkpoint_extra") else {},
    }
    _atomic_torch_save(state, path)
    return str(path)


def read_checkpoint(path) -> dict:
    """Load a checkpoint file's dict; clear errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.exists():
        raise MissingPathError(f"No checkpoint at {str(path)!r}. Pass the path written by run.save_checkpoint().")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CorruptFileError(f"Could not read the checkpoint {str(path)!r}: it is truncated, damaged or not a workbench "
                               f"checkpoint ({type(exc).__name__}: {str(exc)[:200]}).") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptFileError(f"{str(path)!r} is not a workbench checkpoint (format {FORMAT}).")
    return state


def check_fingerprint(model, state: dict, path) -> None:
    """Refuse to load a checkpoint into a model with other parameter names or shapes."""
    want, have = state["fingerprint"], fingerprint(model)
    if want == have:
        return
    missing = [k for k in want if k not in have][:3]
    extra = [k for k in have if k not in want][:3]
    shape = [f"{k}: {want[k]} vs {have[k]}" for k in want if k in have and want[k] != have[k]][:3]
    detail = "; ".join(x for x in [f"missing in this model {missing}" if missing else "",
                                    f"not in the checkpoint {extra}" if extra else "",
                                    f"different shapes {shape}" if shape else ""] if x)
    raise CorruptFileError(f"The checkpoint {str(path)!r} is from a different model ({detail}). Load it into the model "
                           f"it was saved from (described as {state.get('model_description')}).")


def load_checkpoint(run, path) -> None:
    """Restore ``run`` in place. Nothing is modified unless the whole checkpoint is valid for this model."""
    state = read_checkpoint(path)
    check_fingerprint(run.model, state, path)
    if run.running:
        raise ConfigError("Cannot load a checkpoint while the run is training; stop() it first.")
    import param

    run.model.load_state_dict(state["model"])
    config = {k: v for k, v in state["config"].items() if k in run.param and k not in run.STATE_PARAMS}
    run.param.update(**config)
    run._optim = None
    run.setup()
    run.torch_optimizer.load_state_dict(state["optimizer"])
    rng = state["rng"]
    run._rng_state = rng["run_torch"].clone()
    if rng.get("run_cuda") is not None and run.torch_device.type == "cuda":
        run._cuda_rng_state = rng["run_cuda"]
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
    n = rng["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    run._step = int(state["global_step"])
    run.history.load_state_dict(state["history"])
    if state.get("reference") is not None:
        run.reference = Snapshot.from_state_dict(state["reference"]).to(run.torch_device)
    run.run_id = state["run_id"]
    run.parent = state.get("parent")
    if hasattr(run, "load_checkpoint_extra"):
        run.load_checkpoint_extra(state.get("extra", {}))
    status = state.get("status", "idle")
    with param.edit_constant(run):
        run.param.update(status="stopped" if status == "running" else status, last_logged_step=run.global_step,
                         loss=run.history.latest("loss"))


def resume(cls, path, model=None, data=None, **params):
    """Build a ``cls`` run from the checkpoint's descriptions (or the given model/data) and load it."""
    from . import data as data_mod, models as models_mod

    state = read_checkpoint(path)
    if data is None:
        desc = state["data_description"]
        data = data_mod.from_description(desc)
    if model is None:
        model = models_mod.from_description(state["model_description"], data=data if not isinstance(data, str) else None)
    config = {k: v for k, v in state["config"].items() if k in cls.param and k not in cls.STATE_PARAMS}
    config.update(params)
    run = cls(model, data, **config)
    load_checkpoint(run, path)
    run.param.update(**params)
    return run
