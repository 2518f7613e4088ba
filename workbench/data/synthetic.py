"""Small synthetic tasks whose ground truth is known: grokking, teacher–student regression, sparse parity.

Why: training-dynamics questions (rich vs lazy learning, grokking, feature learning) are clearest on
tasks where the target function is known exactly and the data is generated in milliseconds. Each
function returns a :class:`Dataset` with ``train`` and ``val`` splits; randomness comes only from
``numpy.random.default_rng(seed)``, so the same arguments give bit-identical tensors on every machine.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .base import Dataset, Split

_OPS = {
    "+": lambda a, b, p: (a + b) % p,
    "-": lambda a, b, p: (a - b) % p,
    "*": lambda a, b, p: (a * b) % p,
    "/": lambda a, b, p: (a * np.array([pow(int(v), p - 2, p) for v in b], dtype=np.int64)) % p,
}


def _check_int(name: str, value, low: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer ≥ {low}, got {value!r}.")
    return int(value)


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n ** 0.5) + 1))


def _splits(tensors_train: dict, tensors_val: dict) -> dict[str, Split]:
    return {"train": Split(tensors_train, "train", shuffle=True), "val": Split(tensors_val, "val", shuffle=False)}


def modular_arithmetic(p: int = 97, op: str = "+", train_fraction: float = 0.3, seed: int = 0) -> Dataset:
    """All pairs ``(a, b)`` with ``0 ≤ a, b < p`` labelled ``(a op b) mod p``; a random fraction trains.

    Encoding: ``x`` is a long tensor ``[n, 2]`` holding the two operands *as tokens* in ``[0, p)`` (embed
    them with a shared ``nn.Embedding(p, d)`` — an MLP on the concatenated embeddings or a tiny
    transformer over the 2-token sequence); ``y`` is long ``[n]`` in ``[0, p)`` (``p`` classes). The op
    is fixed per dataset, so it is not a token. ``op`` is one of ``+ - * /``; ``/`` (``a · b⁻¹``) needs a
    prime ``p`` and excludes ``b = 0``. This is the grokking setup of Power et al. (2022): with
    ``train_fraction`` ≈ 0.3 and weight decay, validation accuracy jumps long after training accuracy.
    """
    p = _check_int("p", p, 2)
    if op not in _OPS:
        raise ConfigError(f"op must be one of {list(_OPS)}, got {op!r}.")
    if op == "/" and not _is_prime(p):
        raise ConfigError(f"op='/' needs a prime p (every b ≠ 0 must have an inverse mod p), got p={p}.")
    if not isinstance(train_fraction, (int, float)) or not 0 < train_fraction < 1:
        raise ConfigError(f"train_fraction must be a number strictly between 0 and 1, got {train_fraction!r}.")
    a, b = np.meshgrid(np.arange(p, dtype=np.int64), np.arange(p, dtype=np.int64), indexing="ij")
    a, b = a.ravel(), b.ravel()  # [p*p]
    if op == "/":
        keep = b != 0
        a, b = a[keep], b[keep]
    y = _OPS[op](a, b, p)  # [n]
    order = np.random.default_rng(seed).permutation(len(a))
    n_train = int(round(train_fraction * len(a)))
    if not 0 < n_train < len(a):
        raise ConfigError(f"train_fraction={train_fraction} leaves an empty split of the {len(a)} pairs; use a value nearer 0.5.")
    x = torch.from_numpy(np.stack([a, b], axis=1)[order])  # [n, 2] long
    y = torch.from_numpy(y[order])  # [n] long
    info = {"p": p, "op": op, "train_fraction": train_fraction, "seed": seed, "n_pairs": len(a),
            "vocab_size": p, "n_classes": p, "encoding": "x = [a, b] tokens in [0, p); y = (a op b) mod p"}
    return Dataset("modular_arithmetic", _splits({"x": x[:n_train], "y": y[:n_train]}, {"x": x[n_train:], "y": y[n_train:]}),
                   task="classification", info=info)


def teacher_student(d_in: int = 16, d_out: int = 1, n_train: int = 1024, n_val: int = 256, teacher_width: int = 32,
                    noise: float = 0.1, seed: int = 0) -> Dataset:
    """Regression on a random 2-layer ReLU teacher ``y = W2 · relu(W1 · x)`` (+ noise on train targets).

    ``x ~ N(0, I)`` float ``[n, d_in]``; ``W1 ~ N(0, 1/d_in)`` ``[teacher_width, d_in]``, ``W2 ~ N(0,
    1/teacher_width)`` ``[d_out, teacher_width]``; ``y`` float ``[n, d_out]``. Gaussian noise of std
    ``noise`` is added to *train* targets only, so validation MSE measures the distance to the teacher
    itself (its floor is 0). The teacher's weights are kept on ``dataset.teacher`` (``{"w1", "w2"}``) for
    alignment analyses (e.g. a student init aligned with the task).
    """
    d_in, d_out = _check_int("d_in", d_in, 1), _check_int("d_out", d_out, 1)
    n_train, n_val = _check_int("n_train", n_train, 1), _check_int("n_val", n_val, 1)
    teacher_width = _check_int("teacher_width", teacher_width, 1)
    if not isinstance(noise, (int, float)) or noise < 0:
        raise ConfigError(f"noise must be a number ≥ 0 (std of the label noise), got {noise!r}.")
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((teacher_width, d_in)) / np.sqrt(d_in)  # [h, d_in]
    w2 = rng.standard_normal((d_out, teacher_width)) / np.sqrt(teacher_width)  # [d_out, h]
    x = rng.standard_normal((n_train + n_val, d_in))  # [n, d_in]
    y = np.maximum(x @ w1.T, 0.0) @ w2.T  # [n, d_out]
    y[:n_train] += noise * rng.standard_normal((n_train, d_out))
    x_t, y_t = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    info = {"d_in": d_in, "d_out": d_out, "n_train": n_train, "n_val": n_val, "teacher_width": teacher_width,
            "noise": float(noise), "seed": seed, "target_std": float(y[n_train:].std())}
    ds = Dataset("teacher_student", _splits({"x": x_t[:n_train], "y": y_t[:n_train]}, {"x": x_t[n_train:], "y": y_t[n_train:]}),
                 task="regression", info=info)
    ds.teacher = {"w1": torch.from_numpy(w1).float(), "w2": torch.from_numpy(w2).float()}
    return ds


def sparse_parity(n_bits: int = 20, k: int = 3, n_train: int = 2000, n_val: int = 500, seed: int = 0) -> Dataset:
    """``(n_bits, k)`` sparse parity: the label is the parity of ``k`` secret coordinates of a ±1 vector.

    ``x`` float ``[n, n_bits]`` with entries ±1 (uniform); ``y`` long ``[n]`` = 1 when the product of the
    secret coordinates is −1 (an odd number of −1s among them), else 0 — two classes. The secret
    coordinates (chosen by ``seed``) are in ``info["secret"]``. SGD learns it only after a long plateau
    (≈ n_bits^k steps), a standard probe of hidden progress (Barak et al., 2022).
    """
    n_bits, k = _check_int("n_bits", n_bits, 1), _check_int("k", k, 1)
    n_train, n_val = _check_int("n_train", n_train, 1), _check_int("n_val", n_val, 1)
    if k > n_bits:
        raise ConfigError(f"k (the number of secret bits) must be ≤ n_bits={n_bits}, got k={k}.")
    rng = np.random.default_rng(seed)
    secret = np.sort(rng.choice(n_bits, size=k, replace=False))
    x = rng.integers(0, 2, size=(n_train + n_val, n_bits)) * 2 - 1  # [n, n_bits] in {-1, +1}
    y = (np.prod(x[:, secret], axis=1) < 0).astype(np.int64)  # [n]
    x_t, y_t = torch.from_numpy(x).float(), torch.from_numpy(y)
    info = {"n_bits": n_bits, "k": k, "n_train": n_train, "n_val": n_val, "seed": seed,
            "secret": [int(i) for i in secret], "n_classes": 2}
    return Dataset("sparse_parity", _splits({"x": x_t[:n_train], "y": y_t[:n_train]}, {"x": x_t[n_train:], "y": y_t[n_train:]}),
                   task="classification", info=info)
