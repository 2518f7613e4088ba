"""Datasets: the built-in ones by name, or the researcher's own files by path.

>>> from workbench import data
>>> ds = data.load("stories", n_docs=200)             # generated children's stories, LM task
>>> ds.train.batch_at(0, batch_size=8, seed=0)["input_ids"].shape
torch.Size([8, 64])
>>> data.DATASETS.names()
['stories', 'recipes', 'python_docs', 'python_code', 'modular_arithmetic', 'teacher_student', 'sparse_parity', 'two_afc', 'delayed_match']

``load`` also takes a path: a ``.txt`` file (documents separated by blank lines), a ``.jsonl`` file, or a
directory written by ``datasets``' ``save_to_disk``. Every text dataset built with the same
``vocab_size`` shares one tokenizer vocabulary, so a model trained on ``stories`` can be evaluated on
``recipes`` (forgetting) or on any string. Each dataset's ``info`` holds its resolved ``options`` (with
defaults), seed and sizes, so a record can describe the data exactly.
"""

from __future__ import annotations

import functools
import inspect
import os
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, MissingPathError
from ..registry import Registry
from . import corpus, python_text
from .base import TASK_LOSSES, Batch, Dataset, Split, to_device
from .files import PATH_HINT, from_disk, from_jsonl, from_text_file, split_docs
from .synthetic import modular_arithmetic, sparse_parity, teacher_student
from .text import lm_split, text_dataset
from .tokenizer import get_tokenizer

__all__ = ["DATASETS", "load", "Split", "Dataset", "Batch", "to_device", "TASK_LOSSES", "get_tokenizer", "lm_split",
           "text_dataset", "from_text_file", "from_jsonl", "from_disk", "split_docs", "modular_arithmetic",
           "teacher_student", "sparse_parity", "corpus", "builtin_text"]

DATASETS = Registry("dataset", hint="Or pass the path of a file or directory that exists: " + PATH_HINT)


def builtin_text(corpus_name: str, block_size: int = 64, n_docs: int = 2000, n_val_docs: int = 200, seed: int = 0,
                 vocab_size: int = 512, tokenizer=None) -> Dataset:
    """An LM dataset from a generated corpus: ``n_docs`` train and ``n_val_docs`` val documents.

    Val documents continue the same seeded stream, so they never repeat a train document's draw and
    the train set does not change with ``n_val_docs``. ``tokenizer`` defaults to the shared workbench
    BPE of ``vocab_size`` ids.
    """
    if not isinstance(n_val_docs, int) or isinstance(n_val_docs, bool) or n_val_docs < 0:
        raise ConfigError(f"n_val_docs must be an integer ≥ 0, got {n_val_docs!r}.")
    if not isinstance(n_docs, int) or isinstance(n_docs, bool) or n_docs < 1:
        raise ConfigError(f"n_docs must be a positive integer, got {n_docs!r}.")
    docs = corpus.generate(corpus_name, n_docs + n_val_docs, seed)
    tok = tokenizer if tokenizer is not None else get_tokenizer(vocab_size)
    return text_dataset(corpus_name, docs[:n_docs], docs[n_docs:], tok, block_size,
                        info={"corpus": corpus_name, "seed": seed})


@DATASETS.register("stories", task="lm", kind="text")
def stories(block_size: int = 64, n_docs: int = 2000, n_val_docs: int = 200, seed: int = 0, vocab_size: int = 512,
            tokenizer=None) -> Dataset:
    """Generated children's stories (names, animals, places; the hero's name recurs) — language modelling."""
    return builtin_text("stories", block_size, n_docs, n_val_docs, seed, vocab_size, tokenizer)


@DATASETS.register("recipes", task="lm", kind="text")
def recipes(block_size: int = 64, n_docs: int = 2000, n_val_docs: int = 200, seed: int = 0, vocab_size: int = 512,
            tokenizer=None) -> Dataset:
    """Generated recipes (quantities, units, numbered imperative steps) — language modelling."""
    return builtin_text("recipes", block_size, n_docs, n_val_docs, seed, vocab_size, tokenizer)


def _python_text(name: str, train: list, val: list, facts: dict, block_size: int, vocab_size: int, tokenizer) -> Dataset:
    tok = tokenizer if tokenizer is not None else get_tokenizer(vocab_size, mixture="python")
    return text_dataset(name, train, val, tok, block_size, info={"corpus": name, **facts})


@DATASETS.register("python_docs", task="lm", kind="text")
def python_docs(block_size: int = 64, chunk_chars: int = 2000, val_fraction: float = 0.1, seed: int = 0,
                vocab_size: int = 512, tokenizer=None) -> Dataset:
    """Real English prose: the Python Language Reference that CPython ships (pydoc_data), split by topic."""
    train, val, facts = python_text.docs_documents(chunk_chars, val_fraction, seed)
    return _python_text("python_docs", train, val, facts, block_size, vocab_size, tokenizer)


@DATASETS.register("python_code", task="lm", kind="text")
def python_code(block_size: int = 64, n_files: int = 120, chunk_chars: int = 2000, val_fraction: float = 0.1,
                seed: int = 0, vocab_size: int = 512, tokenizer=None) -> Dataset:
    """Real code: ``n_files`` files of the running interpreter's standard library (no tests, no site-packages)."""
    train, val, facts = python_text.code_documents(n_files, chunk_chars, val_fraction, seed)
    return _python_text("python_code", train, val, facts, block_size, vocab_size, tokenizer)


DATASETS.register("modular_arithmetic", modular_arithmetic, task="classification", kind="synthetic",
                  help="(a op b) mod p from operand tokens [a, b]: the grokking task.")
DATASETS.register("teacher_student", teacher_student, task="regression", kind="synthetic",
                  help="Regression on a random 2-layer ReLU teacher network.")
DATASETS.register("sparse_parity", sparse_parity, task="classification", kind="synthetic",
                  help="Parity of k secret bits of a ±1 vector of n_bits.")

_LOADERS: dict[str, Callable[..., Dataset]] = {".txt": from_text_file, ".text": from_text_file, ".md": from_text_file,
                                               ".jsonl": from_jsonl, ".ndjson": from_jsonl}


def options_of(fn: Callable) -> dict[str, Any]:
    """The options a dataset builder accepts, with their defaults (what a panel shows)."""
    return {n: (p.default if p.default is not inspect.Parameter.empty else None)
            for n, p in inspect.signature(fn).parameters.items() if n != "path"}


def _call(label: str, fn: Callable, options: dict, accepted: dict | None = None) -> Dataset:
    """Call ``fn(**options)`` after checking the option names; record the resolved options in ``info``."""
    accepted = options_of(fn) if accepted is None else accepted
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"Unknown option(s) {unknown} for dataset {label!r}; it accepts: {', '.join(accepted)}.")
    ds = fn(**options)
    resolved = {**accepted, **options}
    if resolved.get("tokenizer") is not None:  # keep info JSON-able
        resolved["tokenizer"] = getattr(resolved["tokenizer"], "name_or_path", "") or type(resolved["tokenizer"]).__name__
    ds.info.setdefault("options", resolved)
    return ds


def _looks_like_path(s: str) -> bool:
    return os.sep in s or "/" in s or s.startswith("~") or Path(s).suffix.lower() in (*_LOADERS, ".json")


def load(name_or_path: str | os.PathLike, **options) -> Dataset:
    """A :class:`Dataset` from a registered name (``DATASETS.names()``) or a path.

    Paths: a directory → :func:`from_disk`; ``.jsonl``/``.ndjson`` → :func:`from_jsonl`; ``.txt``/
    ``.text``/``.md`` → :func:`from_text_file`. ``options`` go to the builder; unknown ones raise
    :class:`ConfigError` listing the accepted ones.
    """
    if isinstance(name_or_path, str) and name_or_path in DATASETS:
        return _call(name_or_path, DATASETS.get(name_or_path), options)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ConfigError(f"load() needs a dataset name or a path, got {type(name_or_path).__name__} {name_or_path!r}. "
                          f"Known datasets: {', '.join(DATASETS.names())}.")
    p = Path(name_or_path).expanduser()
    if p.exists():
        loader = from_disk if p.is_dir() else _LOADERS.get(p.suffix.lower())
        if loader is None:
            raise ConfigError(f"Cannot tell how to read {str(p)!r} from its suffix {p.suffix!r}; use one of "
                              f"{sorted(_LOADERS)} or a save_to_disk directory (or call from_text_file/from_jsonl directly).")
        return _call(str(p), functools.partial(loader, p), options, options_of(loader))
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(str(name_or_path)):
        raise MissingPathError(f"{str(p)!r} is neither a registered dataset nor an existing path. {PATH_HINT} "
                               f"Known datasets: {', '.join(DATASETS.names())}.")
    return DATASETS.get(str(name_or_path))  # raises NotFoundError with close matches and the known names


from . import cognitive  # noqa: E402  registers two_afc and delayed_match (RNN cognitive tasks)


def from_description(desc: dict) -> Dataset:
    """Rebuild a dataset from ``Dataset.describe()`` (as stored in records and checkpoints).

    Works for registered datasets and files that still exist; other sources need ``data=`` passed
    explicitly (for example to ``Run.resume``).
    """
    name = desc.get("name")
    options = {k: v for k, v in (desc.get("options") or {}).items() if k != "tokenizer" or v is None}
    if name in DATASETS:
        return load(name, **options)
    source = desc.get("source") or name
    if source and Path(str(source)).expanduser().exists():
        return load(source, **options)
    raise ConfigError(f"Cannot rebuild the dataset described as {name!r} (source {source!r} is not a registered dataset "
                      "or an existing path): pass data= explicitly.")


__all__.append("from_description")
