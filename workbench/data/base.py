"""What every dataset in the workbench is: named splits of examples, deterministic batches, a loss.

A :class:`Split` is an indexable set of examples. ``split.batch_at(i, batch_size, seed)`` returns the
``i``-th batch of a seeded, epoch-wise shuffled pass — a pure function of ``(i, batch_size, seed)``. So
the *data position* of a run is just its step, and a resumed run sees exactly the batches an
uninterrupted one would have seen.

A :class:`Dataset` groups splits (``train``, ``val``, …) with a ``task`` that says how a model's loss is
computed on a batch (``lm``, ``regression``, ``classification``). Datasets live in the ``DATASETS``
registry (``workbench.data.load(name, **options)``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError

Batch = dict[str, torch.Tensor]


def seed_words(seed: int) -> list[int]:
    """``seed`` as 32-bit words for ``numpy.random.SeedSequence``, one-to-one over all integers.

    Seeds in ``[0, 2**32)`` are one word (unchanged since the first release, so their data is too);
    any other seed — negative or ≥ 2**32 — adds its magnitude's higher words and its sign, so seeds that
    differ by 2**32 give different data.

    >>> seed_words(7), seed_words(7 + 2**32) != seed_words(7)
    ([7], True)
    """
    seed = int(seed)
    if 0 <= seed < 2**32:
        return [seed]
    mag = abs(seed)
    words = []
    while mag:
        words.append(mag & 0xFFFFFFFF)
        mag >>= 32
    return [seed & 0xFFFFFFFF, *words, int(seed < 0), len(words)]


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``range(n)`` used in ``epoch``: seeded by both, independent of history."""
    words = seed_words(seed)
    return np.random.default_rng([words[0], int(epoch), *words[1:]]).permutation(n)


class Split:
    """An indexable set of examples stored as aligned tensors (first dim = example).

    Parameters
    ----------
    tensors : name → tensor ``[n, ...]``, e.g. ``input_ids``/``labels`` for a language model.
    name : split name for messages (``"train"``).
    shuffle : shuffle each epoch (``batch_at``); evaluation iterates in order with ``batches``.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], name: str = "train", shuffle: bool = True):
        if not tensors:
            raise ConfigError(f"Split {name!r} has no tensors.")
        sizes = {k: int(v.shape[0]) for k, v in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise ConfigError(f"Split {name!r}: tensors have different numbers of examples {sizes}.")
        self.tensors = dict(tensors)
        self.name = name
        self.shuffle = shuffle
        self.n = next(iter(sizes.values()))
        if self.n == 0:
            raise ConfigError(f"Split {name!r} is empty: it has no examples. Give it data (check the file or the options that size it).")

    def __len__(self) -> int:
        return self.n

    def take(self, index) -> Batch:
        """Examples at ``index`` (array of ints) as a batch dict (CPU tensors)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return {k: v[idx] for k, v in self.tensors.items()}

    def indices_at(self, i: int, batch_size: int, seed: int) -> np.ndarray:
        """Example indices of the ``i``-th training batch (wraps across epochs)."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be ≥ 1, got {batch_size}.")
        start = int(i) * batch_size
        out = []
        while len(out) < batch_size:
            epoch, offset = divmod(start + len(out), self.n)
            order = _epoch_order(self.n, seed, epoch) if self.shuffle else np.arange(self.n)
            out.extend(order[offset : offset + batch_size - len(out)].tolist())
        return np.asarray(out)

    def batch_at(self, i: int, batch_size: int, seed: int = 0) -> Batch:
        """The ``i``-th batch of the seeded shuffled stream: a pure function of its arguments."""
        return self.take(self.indices_at(i, batch_size, seed))

    def batches(self, batch_size: int, limit: int | None = None):
        """Iterate in order over the split (evaluation), at most ``limit`` batches."""
        for b, start in enumerate(range(0, self.n, batch_size)):
            if limit is not None and b >= limit:
                return
            yield self.take(np.arange(start, min(start + batch_size, self.n)))

    def subset(self, index, name: str | None = None) -> "Split":
        """A new split of the examples at ``index``."""
        return Split(self.take(index), name=name or self.name, shuffle=self.shuffle)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in self.tensors.items())
        return f"Split({self.name!r}, n={self.n}, {shapes})"


def lm_loss(model, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean next-token cross-entropy of a causal LM (labels ``-100`` are ignored)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), labels=batch["labels"])
    return out.loss, {}


def regression_loss(model, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean squared error of ``model(x)`` against ``y``."""
    pred = model(batch["x"])
    return F.mse_loss(pred.float(), batch["y"].float()), {}


def classification_loss(model, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of ``model(x)`` logits against integer ``y`` (any leading dims; ``-100`` ignored)."""
    logits = model(batch["x"]).float()
    y = batch["y"]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
    with torch.no_grad():
        mask = y != -100
        acc = ((logits.argmax(-1) == y) & mask).sum() / mask.sum().clamp(min=1)
    return loss, {"accuracy": float(acc)}


TASK_LOSSES: dict[str, Callable] = {"lm": lm_loss, "regression": regression_loss, "classification": classification_loss}


class Dataset:
    """Named splits plus the task that defines the loss.

    Parameters
    ----------
    name : registry name or a description of the source (a path).
    splits : ``{"train": Split, "val": Split, ...}``; ``train`` is required.
    task : ``"lm"``, ``"regression"`` or ``"classification"``, or pass ``loss``.
    loss : ``loss(model, batch) -> (scalar tensor, {metric: float})``; overrides the task's.
    info : JSON-able facts for the record (sizes, options, seed, tokenizer).
    tokenizer : the HF tokenizer for text datasets (``None`` otherwise).
    """

    def __init__(self, name: str, splits: Mapping[str, Split], task: str = "lm", loss: Callable | None = None,
                 info: dict | None = None, tokenizer: Any = None):
        if "train" not in splits:
            raise ConfigError(f"Dataset {name!r} needs a 'train' split; it has {list(splits)}.")
        if loss is None and task not in TASK_LOSSES:
            raise ConfigError(f"Unknown task {task!r} for dataset {name!r}; use one of {list(TASK_LOSSES)} or pass loss=.")
        self.name = name
        self.splits = dict(splits)
        self.task = task
        self._loss = loss or TASK_LOSSES[task]
        self.info = dict(info or {})
        self.tokenizer = tokenizer

    @property
    def train(self) -> Split:
        return self.splits["train"]

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise ConfigError(f"Dataset {self.name!r} has no split {name!r}; it has {list(self.splits)}.")
        return self.splits[name]

    def loss(self, model, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self._loss(model, batch)

    def describe(self) -> dict:
        """JSON-able description stored in records."""
        return {"name": self.name, "task": self.task, "sizes": {k: len(v) for k, v in self.splits.items()}, **self.info}

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, task={self.task!r}, splits={ {k: len(v) for k, v in self.splits.items()} })"


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    """Move every tensor of a batch to ``device`` (non-blocking where it can)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
