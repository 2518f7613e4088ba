"""Real text that ships with every CPython: its reference documentation and its standard library's source.

Why: the generated corpora (``stories``, ``recipes``) are so regular that a tiny model reaches a loss of
~0.4 on them, so fine-tuning from one to the other is mostly re-learning token statistics. These two
corpora are real text nobody here wrote, need no download, and differ clearly from each other (English
prose vs Python code) — a natural pre-train → fine-tune pair for forgetting studies.

* ``python_docs``: the 79 topics of the Python *Language Reference* that CPython ships as
  ``pydoc_data.topics.topics`` (~465k characters of English technical prose; what ``help("assert")``
  prints). Topics are cut into documents of whole paragraphs of at most ``chunk_chars`` characters.
* ``python_code``: the standard library's own ``.py`` files (``sysconfig.get_paths()["stdlib"]``), without
  ``site-packages``, ``__pycache__`` and test folders (``test``, ``tests``, ``idle_test``), read with the
  encoding each file declares (:func:`tokenize.open`) and cut into documents of whole lines.

Both are deterministic: sources are sorted by name, chunked with fixed rules, and assigned to ``train`` or
``val`` *by source* (a topic or a file; never one source in both), by a seeded permutation. The text depends
on the interpreter, so each dataset's ``info`` records the Python version and the SHA-256 of the text used.
Nothing is written anywhere: the files are only read.

Both share one byte-level BPE trained on a fixed mixture of the two (``get_tokenizer(vocab_size,
mixture="python")``), so a model trained on one is evaluated on the other with the same vocabulary.

>>> docs = python_docs_sources()
>>> len(docs) >= 70 and "assert" in docs
True
>>> chunk_text("one\\n\\ntwo\\n\\nthree", 8, sep="\\n\\n")
['one\\n\\ntwo', 'three']
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import sysconfig
import tokenize
from pathlib import Path

import numpy as np

from ..errors import ConfigError

#: folder names never read from the standard library (third-party code and the test suites)
EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"})


def interpreter() -> dict:
    """Which Python the text came from (recorded in every dataset built from it)."""
    return {"python": platform.python_version(), "implementation": sys.implementation.name}


def python_docs_sources() -> dict[str, str]:
    """``{topic: text}`` of the reference documentation shipped in ``pydoc_data`` (sorted by topic)."""
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # some distributions strip pydoc_data
        raise ConfigError(f"This Python ({platform.python_version()}) ships without pydoc_data ({exc}); python_docs "
                          "needs a full CPython install. Use python_code or your own text file instead.") from None
    return {k: topics[k] for k in sorted(topics)}


def stdlib_files(root: str | os.PathLike | None = None) -> list[Path]:
    """The standard library's ``.py`` files, sorted by their path relative to ``root``; tests and site-packages excluded."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise ConfigError(f"The standard library folder {str(root)!r} does not exist; python_code reads the running "
                          "interpreter's stdlib. Pass root= pointing at a folder of .py files.")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS)
        out.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def read_source(path: Path) -> str:
    """A ``.py`` file's text, decoded with the encoding it declares (PEP 263); undecodable files give ``""``."""
    try:
        with tokenize.open(path) as f:
            return f.read()
    except (SyntaxError, UnicodeDecodeError, OSError):
        return ""


def chunk_text(text: str, max_chars: int, sep: str) -> list[str]:
    """Cut ``text`` at ``sep`` into runs of whole parts, each ≤ ``max_chars`` (a longer single part stays whole).

    Joining the chunks with ``sep`` gives ``text`` back, except that whitespace-only chunks are dropped.
    """
    chunks, current = [], None
    for part in text.split(sep):
        candidate = part if current is None else current + sep + part
        if current is not None and len(candidate) > max_chars:
            chunks.append(current)
            current = part
        else:
            current = candidate
    if current is not None:
        chunks.append(current)
    return [c for c in chunks if c.strip()]


def split_sources(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Assign whole sources to train and val by a seeded permutation (val keeps ≥ 1 source when asked for)."""
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction!r}.")
    order = np.random.default_rng(seed).permutation(len(names))
    n_val = 0 if val_fraction == 0 else max(1, round(val_fraction * len(names)))
    val = {names[i] for i in order[:n_val]}
    return [n for n in names if n not in val], [n for n in names if n in val]


def _digest(texts: list[str]) -> str:
    return hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:16]


def _check(name: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer ≥ {low}, got {value!r}.")


def docs_documents(chunk_chars: int = 2000, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str], dict]:
    """Train and val documents of ``python_docs`` and the facts that describe them."""
    _check("chunk_chars", chunk_chars, 100)
    sources = python_docs_sources()
    train_topics, val_topics = split_sources(list(sources), val_fraction, seed)
    train = [c for t in train_topics for c in chunk_text(sources[t], chunk_chars, "\n\n")]
    val = [c for t in val_topics for c in chunk_text(sources[t], chunk_chars, "\n\n")]
    facts = {**interpreter(), "source": "pydoc_data.topics", "n_sources": {"train": len(train_topics), "val": len(val_topics)},
             "val_sources": val_topics, "text_sha256": _digest(train + val)}
    return train, val, facts


def code_documents(n_files: int = 120, chunk_chars: int = 2000, val_fraction: float = 0.1, seed: int = 0,
                   root: str | os.PathLike | None = None) -> tuple[list[str], list[str], dict]:
    """Train and val documents of ``python_code`` from ``n_files`` stdlib files (a seeded choice) and their facts."""
    _check("n_files", n_files, 2)
    _check("chunk_chars", chunk_chars, 100)
    files = stdlib_files(root)
    base = Path(root or sysconfig.get_paths()["stdlib"])
    names = [p.relative_to(base).as_posix() for p in files]
    chosen = sorted(np.random.default_rng(seed).permutation(len(names))[: min(n_files, len(names))].tolist())
    names = [names[i] for i in chosen]
    train_files, val_files = split_sources(names, val_fraction, seed)
    text = {n: read_source(base / n) for n in names}
    train = [c for n in train_files for c in chunk_text(text[n], chunk_chars, "\n")]
    val = [c for n in val_files for c in chunk_text(text[n], chunk_chars, "\n")]
    facts = {**interpreter(), "source": "stdlib", "n_sources": {"train": len(train_files), "val": len(val_files)},
             "val_sources": val_files, "text_sha256": _digest(train + val)}
    return train, val, facts


def tokenizer_texts() -> list[str]:
    """The fixed mixture the shared ``python`` BPE is trained on: all of the docs plus 60 stdlib files (seed 1234)."""
    docs, docs_val, _ = docs_documents(val_fraction=0.0)
    code, _, _ = code_documents(n_files=60, val_fraction=0.0, seed=1234)
    return docs + docs_val + code
