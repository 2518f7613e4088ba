"""All singular values of many matrices as √eig(WᵀW): one GEMM pass and a symmetric eigensolver per matrix.

Why not ``torch.linalg.svdvals``: LAPACK's SVD of an m × r matrix (``gesdd``) bidiagonalizes W itself — memory-bound
work on all m·r entries (GPT-2's 50257 × 768 embedding: ~2 s on one core). The Gram matrix G = WᵀW (``[r, r]``,
tall orientation) costs m·r² flops of GEMM at full speed (upper block triangle only, :func:`~.topk.gram`), and
the eigenvalues of G (``syevd``: tridiagonal reduction of r × r, ~(4/3)r³ flops, half of them memory-bound) cost
the same for every m. On GPT-2-small (50 matrices, r = 768) that is ~3× less time than ``svdvals`` in fp32.

Accuracy: forming G squares the condition number. G's eigenvalues carry an absolute error of a few
eps·λ_max (measured ≤ 1e-6·λ_max in fp32 on GPT-2-small, random and heavy-tailed), so σ_i = √λ_i is accurate to
δ/(2λ_i) relative: ~1e-6 near the top, and the *small* σ of an ill-conditioned matrix (square, rank-deficient,
trained) lose their digits in fp32. Each matrix is therefore checked before its eigensolve: if λ_min ≥
``RESOLVES``·λ_max = 1e-2·λ_max (a Cholesky of G − ``RESOLVES``·λ̃_max·I succeeds, λ̃_max from a few power steps),
fp32 keeps every σ within δ/(2λ_min) ≤ 5e-5 relative (≤ 1e-4 with λ̃_max as low as 0.5·λ_max); otherwise that matrix's G is formed and solved in fp64 (σ to ~1e-7·σ_max absolute,
as good as an fp32 SVD; rank-deficient matrices give zeros below the numerical-rank tolerance). fp64 input stays
fp64. The top of the spectrum — what α and the heavy-tailed metrics read — is within ~2e-6 either way.

>>> import torch
>>> w = torch.randn(300, 100, generator=torch.Generator().manual_seed(0))
>>> s = gram_singular_values(w.unsqueeze(0))[0]
>>> torch.allclose(s, torch.linalg.svdvals(w), rtol=1e-4)
True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .topk import _check_gram, gram, tall

RESOLVES = 1e-2  # λ_min/λ_max at or above this: fp32 Gram eigenvalues give every σ to ≤ 5e-5 relative (δ ≤ 1e-6·λ_max)
POWER_STEPS = 6  # power steps for λ̃_max: a lower bound (≥ 0.68·λ_max on GPT-2-small, random and heavy-tailed)


def resolved_in_fp32(grams: torch.Tensor, ratio: float = RESOLVES) -> torch.Tensor:
    """``[b]`` bool: whether λ_min(G) ≥ ``ratio``·λ_max(G) for each fp32 Gram matrix of ``grams`` ``[b, r, r]``.

    λ_max from power steps (a lower bound λ̃), then one Cholesky of G − ratio·λ̃·I: it succeeds iff every
    eigenvalue exceeds the shift. ~r³/3 flops, a tenth of the eigensolve it may save.
    """
    b, r, _ = grams.shape
    gen = torch.Generator(device=grams.device).manual_seed(0)  # a fixed random start: not orthogonal to the top
    v = torch.randn(b, r, 1, generator=gen, dtype=grams.dtype, device=grams.device)
    for _ in range(POWER_STEPS):
        v = torch.bmm(grams, v)
        v = v / v.norm(dim=1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
    top = (v.mT @ grams @ v).view(b)  # Rayleigh quotient ≤ λ_max
    eye = torch.eye(r, dtype=grams.dtype, device=grams.device)
    _, info = torch.linalg.cholesky_ex(grams - (ratio * top).view(b, 1, 1) * eye)
    return (info == 0) & (top > 0)


def gram_singular_values(matrices: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """All singular values (descending) of a batch ``[..., m, n]`` (returns ``[..., r]``) or of a list of 2-D
    matrices with the same r = min(m, n) (returns ``[b, r]``; no stacked copy of the weights is made).

    fp32 matrices whose spectrum fp32 resolves (:func:`resolved_in_fp32`) take the fp32 Gram matrix's
    eigenvalues; the others (and fp64 input) are formed and solved in fp64. Results are fp32 (fp64 for fp64
    input). NaN/inf entries raise :class:`~workbench.errors.ConfigError` (they show on G's diagonal).
    """
    if isinstance(matrices, torch.Tensor):
        x = tall(matrices)
        lead, (m, r) = x.shape[:-2], x.shape[-2:]
        flat = list(x.reshape(-1, m, r).unbind(0))
    else:
        flat = [tall(w) for w in matrices]
        lead, r = (len(flat),), flat[0].shape[-1]
    dtype = torch.float64 if any(w.dtype == torch.float64 for w in flat) else torch.float32
    device = flat[0].device
    grams = torch.empty(len(flat), r, r, dtype=dtype, device=device)
    for w, out in zip(flat, grams):
        gram(w.to(dtype), out=out)
    _check_gram(grams)
    lam = torch.empty(len(flat), r, dtype=torch.float64, device=device)
    fp32 = resolved_in_fp32(grams) if dtype == torch.float32 else torch.zeros(len(flat), dtype=torch.bool, device=device)
    if bool(fp32.any()):
        lam[fp32] = torch.linalg.eigvalsh(grams[fp32]).double()
    redo = (~fp32).nonzero().flatten().tolist()
    if redo:
        exact = grams[redo] if dtype == torch.float64 else torch.stack([gram(flat[i].double()) for i in redo])
        lam[redo] = torch.linalg.eigvalsh(exact)
    return lam.flip(-1).clamp_min(0).sqrt().to(dtype).reshape(*lead, r)
