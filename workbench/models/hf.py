"""Load and save Hugging Face causal LMs: local directories offline, hub ids when online.

``save(model, dir)`` writes ``save_pretrained`` output (plus the tokenizer, if given, and a small
``workbench.json`` with the model's origin and run lineage) into a temporary sibling folder and swaps it
into place (:mod:`workbench.atomic`), so a crash never leaves a half-written model and never loses the
previous one; an existing folder is replaced only if it is a saved model (``config.json``, no subfolders).
``load(dir)`` reads it back; a damaged folder raises :class:`~workbench.errors.CorruptFileError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .. import atomic
from ..errors import ConfigError, CorruptFileError, MissingPathError

ORIGIN_FILE = "workbench.json"


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1] or name.count("/") > 1


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached (offline mode, no DNS, no route), or None if it answers.

    Checked up front so an offline machine fails in seconds, not after a minute of HTTP retries.
    """
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set and the model is not in the local cache"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
    except OSError as exc:
        return f"the hub at {url.hostname} is unreachable: {exc}"
    return None


def load(id_or_path: str, dtype: torch.dtype | str | None = None, device: str | None = None, **kwargs) -> torch.nn.Module:
    """A causal LM from a local directory (offline) or a hub id (needs network or a local HF cache).

    A hub id that cannot be fetched raises a ``ConfigError`` that says to pass a local path.
    """
    from transformers import AutoModelForCausalLM

    path = Path(os.path.expanduser(str(id_or_path)))
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    kw = dict(kwargs)
    if dtype is not None:
        kw["dtype"] = dtype
    atomic.recover(path)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise MissingPathError(f"{str(path)!r} is a folder but has no config.json: it is not a saved model. "
                                   "Pass a folder written by models.save() or save_pretrained().")
        try:
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kw)
            origin = {"path": str(path.resolve())}
            meta = path / ORIGIN_FILE
            if meta.exists():
                origin.update(json.loads(meta.read_text()))
                origin["path"] = str(path.resolve())
        except Exception as exc:  # transformers, safetensors and json raise many kinds for damaged files
            raise CorruptFileError(f"Could not load the model folder {str(path)!r}: it is damaged or incomplete "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}). "
                                   "Save it again with models.save() or restore it from a copy.") from None
    else:
        name = str(id_or_path)
        if _looks_like_path(name) or path.suffix:
            raise MissingPathError(f"No model folder at {name!r}. Pass an existing local directory (models.save()) or a "
                                   "Hugging Face hub id such as 'gpt2'.")
        try:
            reason = _hub_unreachable()
            if reason:  # offline: only the local Hugging Face cache can help; never touch the network
                from huggingface_hub import snapshot_download

                try:
                    cached = snapshot_download(name, local_files_only=True)
                except Exception:
                    raise OSError(f"{reason}, and {name!r} is not in the local Hugging Face cache") from None
                model = AutoModelForCausalLM.from_pretrained(cached, local_files_only=True, **kw)
            else:
                model = AutoModelForCausalLM.from_pretrained(name, **kw)
        except Exception as exc:
            raise ConfigError(f"Could not load {name!r} from the Hugging Face hub ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]}). This machine may be offline: download the model "
                              f"elsewhere and pass its local path instead, e.g. models.load('/path/to/{name.split('/')[-1]}').") from None
        origin = {"hub_id": name}
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"
    if device is not None:
        model.to(device)
    model.workbench_origin = origin
    return model


def is_model_folder(path: Path) -> bool:
    """True for a folder that holds one saved model (``config.json``, files only): what save may replace."""
    entries = list(Path(path).iterdir())
    return any(e.name == "config.json" for e in entries) and all(e.is_file() for e in entries)


def save(model: torch.nn.Module, directory: str | os.PathLike, tokenizer=None, run_id: str | None = None) -> Path:
    """Save ``model`` (and ``tokenizer``) so that :func:`load` reads it back; atomic folder swap."""
    directory = atomic.check_target(directory, "model folder")
    if not hasattr(model, "save_pretrained"):
        raise ConfigError(f"models.save needs a Hugging Face model (with save_pretrained); got {type(model).__name__}. "
                          "Use torch.save(model.state_dict(), path) for plain modules.")
    if hasattr(model, "peft_config"):
        raise ConfigError("This is a PEFT model: merge it first (finetune.merged(...)) or save the adapter with "
                          "model.save_pretrained(dir).")

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        origin = dict(getattr(model, "workbench_origin", {}) or {})
        if run_id:
            origin["run_id"] = run_id
        (tmp / ORIGIN_FILE).write_text(json.dumps(origin, default=str, indent=1))

    return atomic.write_dir(directory, write, what="model folder", owns=is_model_folder)
