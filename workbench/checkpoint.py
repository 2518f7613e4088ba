"""Checkpoints: everything a run needs to continue bit-identically, in one atomically written file.

A checkpoint is ``run.state_dict()`` (weights, optimizer state, step — which is also the data
position, batch ``i`` being a pure function of ``(seed, i)`` — the run's own random streams, config,
history, W0 reference, ids and whatever a subclass adds) plus a header: format version, stage, the
model's parameter fingerprint (names and shapes), the model and data descriptions (so
``Run.resume(path)`` can rebuild presets and built-in datasets by itself) and a **data fingerprint**.

Loading is all or nothing: the file, the model fingerprint, the data fingerprint and then every
section of the run state are checked before the run changes (:meth:`workbench.Run.load_state_dict`).
Python's and NumPy's global generators are neither saved nor touched: a run's randomness is its own.

The data fingerprint is a SHA-256 of the task and of every split's tensors (names, dtypes, shapes
and contents): it changes when the data file, the tokenizer, the block size or the sizes change, and
not when the same file is moved. Resuming on other data is refused unless ``allow_data_change=True``.

Files are loaded with ``torch.load(weights_only=True)``: a checkpoint cannot run code.
The learning-rate schedule is a pure function of the step, so it needs no state of its own.
"""

from __future__ import annotations

import hashlib
import weakref
from pathlib import Path

import torch

from . import atomic, distributed
from .errors import ConfigError, CorruptFileError, MissingPathError
from .matrices import fingerprint
from .run_state import shape_difference

FORMAT = 2
_DATA_FINGERPRINTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def data_fingerprint(dataset) -> str:
    """SHA-256 (hex) of ``dataset``'s task and every split's tensors; cached per dataset object."""
    try:
        return _DATA_FINGERPRINTS[dataset]
    except (KeyError, TypeError):
        pass
    h = hashlib.sha256(f"task={dataset.task}".encode())
    for split in sorted(dataset.splits):
        for name, tensor in sorted(dataset.splits[split].tensors.items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"|{split}.{name}:{t.dtype}:{tuple(t.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    digest = h.hexdigest()
    try:
        _DATA_FINGERPRINTS[dataset] = digest
    except TypeError:
        pass
    return digest


def _atomic_torch_save(obj, path: Path) -> None:
    atomic.write_file(path, lambda f: torch.save(obj, f), what="checkpoint")


def save_checkpoint(run, path) -> str:
    """Write ``run``'s full state to ``path`` (temp file + rename).

    In a multi-process run only rank 0 writes; under ``strategy="fsdp"`` every rank must call this (the
    full weights and optimizer state are gathered to rank 0, :mod:`workbench.fsdp`).
    """
    path = Path(path)
    if not path.parent.exists():
        raise MissingPathError(f"Cannot save the checkpoint to {str(path)!r}: the folder {str(path.parent)!r} does not exist.")
    if run.running:
        raise ConfigError("Cannot checkpoint while the run is training; stop() it first (checkpoints are taken at step boundaries).")
    state = {
        "format": FORMAT,
        "stage": type(run).__name__,
        "model_description": run.describe_model(),
        "data_description": run.data.describe(),
        "data_fingerprint": data_fingerprint(run.data),
        "fingerprint": fingerprint(run.model),
        "run": run.state_dict(),  # under FSDP a collective: full tensors on rank 0 only
    }
    if run.strategy != "single" and not distributed.is_main():
        return str(path)
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
    if isinstance(state, dict) and state.get("format") == 1:
        state = _from_format_1(state)
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("run"), dict):
        raise CorruptFileError(f"{str(path)!r} is not a workbench checkpoint (format {FORMAT}): it has no run state. "
                               "Pass a file written by run.save_checkpoint().")
    return state


def _from_format_1(old: dict) -> dict:
    """A format-1 checkpoint (global Python/NumPy RNG saved, extras under ``extra``) in the format-2 layout."""
    rng = old.get("rng") or {}
    seed = int((old.get("config") or {}).get("seed", 0))
    run = {"step": old.get("global_step"), "status": old.get("status", "idle"), "config": old.get("config"),
           "model": old.get("model"), "optimizer": old.get("optimizer"), "history": old.get("history"),
           "reference": old.get("reference"), "run_id": old.get("run_id"), "parent": old.get("parent"),
           # the run's torch streams; its Python/NumPy streams start from the seed (format 1 kept only the globals)
           "rng": {"seed": seed, "torch": rng.get("run_torch"), "cuda": rng.get("run_cuda")},
           **(old.get("extra") or {})}
    return {"format": FORMAT, "stage": old.get("stage"), "model_description": old.get("model_description"),
            "data_description": old.get("data_description"), "data_fingerprint": None,
            "fingerprint": old.get("fingerprint"), "run": run}


def check_fingerprint(model, state: dict, path) -> None:
    """Refuse to load a checkpoint into a model with other parameter names or shapes."""
    want, have = state["fingerprint"], fingerprint(model)
    if want == have:
        return
    detail = shape_difference(want, have, "checkpoint")
    raise CorruptFileError(f"The checkpoint {str(path)!r} is from a different model ({detail}). Load it into the model "
                           f"it was saved from (described as {state.get('model_description')}).")


def check_data(run, state: dict, path, allow_data_change: bool = False) -> None:
    """Refuse a checkpoint whose data fingerprint differs from ``run.data``'s (unless ``allow_data_change``)."""
    want = state.get("data_fingerprint")
    if allow_data_change or want is None:  # format-1 files carry none
        return
    if want != data_fingerprint(run.data):
        raise ConfigError(f"The checkpoint {str(path)!r} was trained on other data than this run has: the data changed "
                          f"since it was saved (saved: {state.get('data_description')}; now: {run.data.describe()}). "
                          "Resume with the data it was trained on, or pass allow_data_change=True to continue on the "
                          "new data anyway.")


def load_checkpoint(run, path, allow_data_change: bool = False) -> None:
    """Restore ``run`` in place, all or nothing: the file, model, data and every section are checked first."""
    state = read_checkpoint(path)
    if run.running:
        raise ConfigError("Cannot load a checkpoint while the run is training; stop() it first.")
    check_fingerprint(run.model, state, path)
    check_data(run, state, path, allow_data_change)
    try:
        run.load_state_dict(state["run"])
    except CorruptFileError as exc:
        raise CorruptFileError(f"Checkpoint {str(path)!r}: {exc}") from None


def resume(cls, path, model=None, data=None, allow_data_change: bool = False, **params):
    """Build a ``cls`` run from the checkpoint's descriptions (or the given model/data) and load it.

    ``params`` override the saved config (e.g. ``device="cpu"``, a new ``max_steps``); ``device`` is
    this machine's choice (``"auto"`` unless given), never the saved one.
    """
    from . import data as data_mod
    from . import models as models_mod

    state = read_checkpoint(path)
    if data is None:
        data = data_mod.from_description(state["data_description"])
    if model is None:
        model = models_mod.from_description(state["model_description"], data=data if not isinstance(data, str) else None)
    saved = state["run"].get("config") or {}
    config = {k: v for k, v in saved.items() if k in cls.param and k not in cls.STATE_PARAMS and k not in cls.NOT_RESTORED}
    config.update(params)
    run = cls(model, data, **config)
    load_checkpoint(run, path, allow_data_change=allow_data_change)
    run.param.update(**params)
    return run
