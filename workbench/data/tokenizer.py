"""The workbench's own small tokenizer: a byte-level BPE trained locally on the built-in corpora.

Why: experiments need a tokenizer with no download, small enough (a few hundred tokens) that tiny
models train in seconds on a CPU, and shared by every text dataset so that models trained on
``stories`` can be evaluated on ``recipes`` (forgetting) or on arbitrary strings (unlearning "facts").
Byte-level BPE covers *any* string: unknown characters fall back to their UTF-8 bytes, never ``<unk>``.

The BPE is trained with HF ``tokenizers`` on a fixed mixture: ``mixture="generated"`` (the default) uses
both generated corpora (``stories`` and ``recipes`` with a fixed seed); ``mixture="python"`` uses the real
text that ships with CPython (its reference documentation and 60 standard-library files, see
:mod:`workbench.data.python_text`) and serves ``python_docs`` and ``python_code``. It is then wrapped as a ``transformers.PreTrainedTokenizerFast`` with special
tokens ``<|pad|>`` (id 0), ``<|bos|>`` (1) and ``<|eos|>`` (2). Every id is ``< vocab_size``.

The trained JSON is cached on disk under ``$WORKBENCH_CACHE/tokenizers/`` (default
``~/.cache/workbench/tokenizers/``) as ``<hash>.json``, where the hash covers the settings *and* the
training text, so changing a grammar retrains instead of silently reusing a stale vocabulary. Writes are
atomic (temporary file + ``os.replace``) so concurrent processes never read a half-written file. Within
a process the JSON is memoized; each call still returns a *fresh* tokenizer object, so adding tokens to
one (vocabulary-expansion experiments) never changes another.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

from ..errors import ConfigError
from . import corpus

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
SPECIAL_TOKENS = (PAD, BOS, EOS)
#: the training mixture: (corpus name, number of documents); fixed seed below
TRAIN_MIXTURE = (("stories", 1500), ("recipes", 1500))
TRAIN_SEED = 1234
MIN_VOCAB = 256 + len(SPECIAL_TOKENS) + 1  # all bytes, the special tokens, ≥ 1 merge
MAX_VOCAB = 32768

_MEMO: dict[str, str] = {}  # cache file path → tokenizer JSON


def cache_dir() -> Path:
    """Where trained tokenizers are cached: ``$WORKBENCH_CACHE/tokenizers`` or ``~/.cache/workbench/tokenizers``."""
    root = os.environ.get("WORKBENCH_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "workbench"
    return base / "tokenizers"


MIXTURES = ("generated", "python")


def _check_mixture(mixture: str) -> None:
    if mixture not in MIXTURES:
        raise ConfigError(f"Unknown tokenizer mixture {mixture!r}; use one of {', '.join(MIXTURES)}.")


def _training_texts(mixture: str = "generated") -> list[str]:
    """The fixed training mixture (generated: ≈3k documents, ≈1.7 MB in ~0.1 s; python: ≈1.5 MB read from disk)."""
    _check_mixture(mixture)
    if mixture == "python":
        from .python_text import tokenizer_texts

        return tokenizer_texts()
    texts: list[str] = []
    for name, n in TRAIN_MIXTURE:
        texts.extend(corpus.generate(name, n, seed=TRAIN_SEED))
    return texts


@functools.lru_cache(maxsize=None)
def _training_digest(mixture: str = "generated") -> str:
    """SHA-256 of the training mixture (computed once per process)."""
    return hashlib.sha256("\x1e".join(_training_texts(mixture)).encode()).hexdigest()


def _settings(vocab_size: int, mixture: str = "generated") -> dict:
    """Everything that determines the trained vocabulary (hashed into the cache file name)."""
    if mixture == "python":
        from .python_text import interpreter

        return {"kind": "byte_bpe", "format": 1, "vocab_size": vocab_size, "special_tokens": list(SPECIAL_TOKENS),
                "min_frequency": 2, "mixture": "python", **interpreter(), "text_sha256": _training_digest(mixture)}
    return {"kind": "byte_bpe", "format": 1, "vocab_size": vocab_size, "special_tokens": list(SPECIAL_TOKENS),
            "min_frequency": 2, "mixture": [list(m) for m in TRAIN_MIXTURE], "seed": TRAIN_SEED,
            "text_sha256": _training_digest(mixture)}


def settings_hash(vocab_size: int = 512, mixture: str = "generated") -> str:
    """The cache key of a tokenizer: 16 hex digits of the hash of its settings and training text."""
    return hashlib.sha256(json.dumps(_settings(vocab_size, mixture), sort_keys=True).encode()).hexdigest()[:16]


def cache_path(vocab_size: int = 512, mixture: str = "generated") -> Path:
    """The file a tokenizer of ``vocab_size`` is cached in."""
    return cache_dir() / f"{settings_hash(vocab_size, mixture)}.json"


def _train(vocab_size: int, mixture: str = "generated") -> str:
    """Train the byte-level BPE and return its JSON (deterministic for the same inputs)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = _training_texts(mixture)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok.to_str()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_json(vocab_size: int, mixture: str = "generated") -> str:
    """The tokenizer JSON: memo, else the disk cache, else train (and cache)."""
    path = cache_path(vocab_size, mixture)
    memo_key = str(path)
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    text = None
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
            json.loads(text)  # a corrupt cache file is retrained below, not trusted
        except (OSError, ValueError):
            text = None
    if text is None:
        text = _train(vocab_size, mixture)
        try:
            _atomic_write(path, text)
        except OSError:  # a read-only home still gets a working tokenizer, just not a cached one
            pass
    _MEMO[memo_key] = text
    return text


def get_tokenizer(vocab_size: int = 512, mixture: str = "generated"):
    """A fresh ``PreTrainedTokenizerFast`` (byte-level BPE, ``vocab_size`` ids incl. specials).

    ``mixture`` picks the training text: ``"generated"`` (stories + recipes) or ``"python"`` (CPython's docs
    and stdlib source).

    Special tokens: ``pad`` = ``<|pad|>`` (id 0), ``bos`` = ``<|bos|>`` (1), ``eos`` = ``<|eos|>`` (2). The
    same ``vocab_size`` always gives the same vocabulary (trained once, then read from the cache).
    ``len(tokenizer) <= vocab_size``; it is equal unless the corpus runs out of pairs to merge.
    """
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise ConfigError(f"vocab_size must be an integer in [{MIN_VOCAB}, {MAX_VOCAB}] (256 bytes + "
                          f"{len(SPECIAL_TOKENS)} special tokens + merges), got {vocab_size!r}.")
    _check_mixture(mixture)
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer.from_str(_load_json(vocab_size, mixture))
    tag = "" if mixture == "generated" else f"{mixture}-"
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   model_max_length=1_000_000_000, clean_up_tokenization_spaces=False,
                                   name_or_path=f"workbench/byte-bpe-{tag}{vocab_size}-{settings_hash(vocab_size, mixture)}")
