"""The researcher's own text: plain ``.txt``, ``.jsonl`` rows, or a HF ``datasets`` directory.

Each loader returns an ``lm`` :class:`Dataset` built with :func:`workbench.data.text.text_dataset`, using
the workbench tokenizer (``get_tokenizer(vocab_size)``) unless a tokenizer is passed. Documents are
shuffled with ``seed`` before ``val_fraction`` of them is held out, so the split does not depend on the
order of the file. Bad input fails early with an error that says what to change:
:class:`MissingPathError` for a path that does not exist, :class:`ConfigError` for empty files, files
without usable rows, or a missing field (the message names the fields that exist).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, MissingPathError
from .base import Dataset
from .text import text_dataset
from .tokenizer import get_tokenizer

PATH_HINT = ("Pass an existing .txt file (documents separated by blank lines), a .jsonl file (one JSON object "
             "per line with a text field), or a directory written by datasets' save_to_disk.")


def _existing(path, kind: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise MissingPathError(f"{kind} not found: {str(p)!r} does not exist. {PATH_HINT}")
    return p


def _check_fraction(val_fraction) -> float:
    if not isinstance(val_fraction, (int, float)) or isinstance(val_fraction, bool) or not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}.")
    return float(val_fraction)


def split_docs(docs: Sequence[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Shuffle ``docs`` with ``seed`` and hold out ``val_fraction`` of them (≥ 1 when possible, never all)."""
    val_fraction = _check_fraction(val_fraction)
    order = np.random.default_rng(seed).permutation(len(docs))
    n_val = 0
    if val_fraction > 0 and len(docs) >= 2:
        n_val = min(max(1, int(round(val_fraction * len(docs)))), len(docs) - 1)
    shuffled = [docs[i] for i in order]
    return shuffled[n_val:], shuffled[:n_val]


def _build(source: Path, fmt: str, train: list[str], val: list[str], tokenizer, block_size: int, vocab_size: int,
           extra: dict[str, Any]) -> Dataset:
    tok = tokenizer if tokenizer is not None else get_tokenizer(vocab_size)
    info = {"source": str(source), "format": fmt, "block_size": block_size, **extra}
    if tokenizer is None:
        info["tokenizer_vocab_size"] = vocab_size
    return text_dataset(str(source), train, val, tok, block_size, info)


def from_text_file(path, tokenizer=None, block_size: int = 64, val_fraction: float = 0.1, seed: int = 0,
                   vocab_size: int = 512) -> Dataset:
    """An LM dataset from a UTF-8 ``.txt`` file whose documents are separated by blank lines."""
    p = _existing(path, "Text file")
    _check_fraction(val_fraction)
    if p.is_dir():
        raise ConfigError(f"{str(p)!r} is a directory; from_text_file needs a .txt file. {PATH_HINT}")
    try:
        raw = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{str(p)!r} is not UTF-8 text ({e.reason} at byte {e.start}); it is probably Latin-1 or "
                          f"cp1252: convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8 in.txt > out.txt).") from None
    docs = [d.strip() for d in re.split(r"\n[ \t\r\f\v]*\n", raw) if d.strip()]
    if not docs:
        raise ConfigError(f"Text file {str(p)!r} is empty (no non-blank text); put documents in it, separated by blank lines.")
    train, val = split_docs(docs, val_fraction, seed)
    return _build(p, "txt", train, val, tokenizer, block_size, vocab_size,
                  {"val_fraction": val_fraction, "seed": seed, "n_docs_total": len(docs)})


def from_jsonl(path, field: str = "text", tokenizer=None, block_size: int = 64, val_fraction: float = 0.1,
               seed: int = 0, vocab_size: int = 512) -> Dataset:
    """An LM dataset from a ``.jsonl`` file: one JSON object per line, the document in ``row[field]``.

    Blank lines are ignored; rows whose ``field`` is missing, not a string or blank are skipped (their
    count is in ``info["n_skipped"]``); if no row is usable the error names the fields that do exist.
    """
    p = _existing(path, "JSONL file")
    _check_fraction(val_fraction)
    if p.is_dir():
        raise ConfigError(f"{str(p)!r} is a directory; from_jsonl needs a .jsonl file. {PATH_HINT}")
    docs: list[str] = []
    seen: dict[str, None] = {}
    n_rows = skipped = 0
    try:
        raw = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line_no = p.read_bytes()[: e.start].count(b"\n") + 1
        raise ConfigError(f"{str(p)!r} is not UTF-8 text ({e.reason} at byte {e.start}, line {line_no}); it is probably "
                          f"Latin-1 or cp1252: convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8 in.jsonl > out.jsonl).") from None
    for lineno, line in enumerate(raw.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{str(p)!r} line {lineno} is not valid JSON ({e.msg}); each line must be one JSON object.") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{str(p)!r} line {lineno} is a JSON {type(row).__name__}, not an object like {{\"{field}\": \"...\"}}.")
        n_rows += 1
        seen.update(dict.fromkeys(row))
        value = row.get(field)
        if isinstance(value, str) and value.strip():
            docs.append(value.strip())
        else:
            skipped += 1
    if n_rows == 0:
        raise ConfigError(f"JSONL file {str(p)!r} is empty (no rows); put one JSON object per line, e.g. {{\"{field}\": \"...\"}}.")
    if not docs:
        if field not in seen:
            raise ConfigError(f"No row of {str(p)!r} has the field {field!r}; the fields present are "
                              f"{list(seen)}. Pass field= one of them.")
        raise ConfigError(f"No usable rows in {str(p)!r}: field {field!r} is never a non-empty string.")
    train, val = split_docs(docs, val_fraction, seed)
    return _build(p, "jsonl", train, val, tokenizer, block_size, vocab_size,
                  {"field": field, "val_fraction": val_fraction, "seed": seed, "n_docs_total": len(docs), "n_skipped": skipped})


def _column(ds, field: str, where: str) -> list[str]:
    if field not in ds.column_names:
        raise ConfigError(f"{where} has no column {field!r}; its columns are {ds.column_names}. Pass field= one of them.")
    return [t.strip() for t in ds[field] if isinstance(t, str) and t.strip()]


def from_disk(path, field: str = "text", tokenizer=None, block_size: int = 64, val_fraction: float = 0.1,
              seed: int = 0, vocab_size: int = 512) -> Dataset:
    """An LM dataset from a directory written by ``datasets``' ``save_to_disk``.

    A ``DatasetDict`` must have a ``train`` split; its ``validation`` (or ``val``, or ``test``) split
    becomes ``val``, else ``val_fraction`` of train is held out. A single ``Dataset`` is split with
    ``val_fraction``. Documents come from the string column ``field``.
    """
    import datasets

    p = _existing(path, "Dataset directory")
    _check_fraction(val_fraction)
    if not p.is_dir():
        raise ConfigError(f"{str(p)!r} is a file; from_disk needs a directory written by save_to_disk. {PATH_HINT}")
    try:
        obj = datasets.load_from_disk(str(p))
    except FileNotFoundError as e:
        raise ConfigError(f"{str(p)!r} is not a dataset saved with save_to_disk ({e}). {PATH_HINT}") from None
    extra: dict[str, Any] = {"field": field, "seed": seed}
    if isinstance(obj, datasets.DatasetDict):
        if "train" not in obj:
            raise ConfigError(f"The DatasetDict at {str(p)!r} has no 'train' split; its splits are {list(obj)}.")
        train = _column(obj["train"], field, f"Split 'train' of {str(p)!r}")
        val_name = next((s for s in ("validation", "val", "test") if s in obj), None)
        if val_name is not None:
            val = _column(obj[val_name], field, f"Split {val_name!r} of {str(p)!r}")
            extra["val_split"] = val_name
        else:
            train, val = split_docs(train, val_fraction, seed)
            extra["val_fraction"] = val_fraction
    else:
        docs = _column(obj, field, f"The dataset at {str(p)!r}")
        train, val = split_docs(docs, val_fraction, seed)
        extra["val_fraction"] = val_fraction
    if not train:
        raise ConfigError(f"No usable rows in {str(p)!r}: column {field!r} has no non-empty strings in train.")
    return _build(p, "save_to_disk", train, val, tokenizer, block_size, vocab_size, extra)
