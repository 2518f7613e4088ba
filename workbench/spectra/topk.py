"""Top-k singular values of many weight matrices, fast: Gram matrix + Chebyshev-filtered subspace iteration.

Why not ``torch.svd_lowrank``: a freshly initialized weight matrix has a flat (Marchenko–Pastur) top spectrum,
the worst case for randomized methods. Plain subspace iteration needs dozens of multiplications by W to get the
64th singular value within 1 % (``svd_lowrank(q=64, niter=2)`` was off by 14 %). Here:

1. **Gram** G = WᵀW (``[r, r]``, r = min(m, n), tall orientation) in one pass over W, computing only the
   blocks on and above the diagonal (the symmetric half, as BLAS ``syrk`` would): about 0.6× a full matmul.
2. **Chebyshev filter** (Zhou & Saad 2007, ChebFSI): each round applies to a ``k + oversample``-wide block the
   Chebyshev polynomial of G that is bounded by 1 on [0, λ_cut] and grows fast above it, then
   re-orthonormalizes. λ_cut is the smallest Ritz value of the block (≈ λ_q, below the wanted ones). A degree-d
   filter separates the wanted eigenvalues from the bulk like cosh(d·acosh(x)) instead of (λ_k/λ_q)^d for
   plain powers: rounds of degree 4 and 6 (11 products by G) do what ~50 power steps would on a flat
   spectrum. Steep spectra get capped degrees and more rounds until an error estimate is below ``tol``.
3. **Values**: in fp32/fp64, Rayleigh–Ritz through W: B = W·Q (``[m, q]``), σ_i² = eigenvalues of BᵀB; rounding
   in B is relative to each column (≈ σ_i u_i), so values far below σ_1 keep their relative accuracy. In bf16
   the Ritz values of G itself (its rounding is below W's; steep spectra are redone in fp32 by "auto").

``precision``: the two multiplications by W (forming G, and B) dominate the cost. ``"bfloat16"`` rounds W to
bf16 and multiplies with fp32 accumulation — on CPUs with AVX512-BF16/AMX (and CUDA GPUs) about 4× the fp32
throughput. Rounding W to bf16 (8 significant bits) moves each entry by at most 2⁻⁸ ≈ 4e-3 of itself: a
diagonal matrix's singular values (its entries) can be off by that much; in a dense matrix the errors average
out and perturb σ by ~1e-3 of the bulk edge (Weyl), so top values of real weights are within ~1e-3. ``"float32"`` keeps everything in fp32; fp64 input always stays fp64.
``"auto"`` (default) picks bf16 where it is native, fp32 elsewhere (bf16 arithmetic emulated in software is
slower than fp32). Whatever the precision, a matrix whose spectrum turns out too steep for it is redone: bf16
results with σ_k/σ_1 < ``STEEP`` in fp32, fp32 results with σ_k/σ_1 < ``EXACT`` by the exact SVD. Errors are measured in ``benchmarks/bench_spectra.py`` and ``tests/unit/test_spectra_topk.py``.

>>> import torch
>>> w = torch.diag(torch.arange(300.0, 0.0, -1.0))
>>> top = top_singular_values([w], k=3, precision="float32")[0]     # a list: one tensor per matrix
>>> torch.allclose(top, torch.tensor([300.0, 299.0, 298.0]), rtol=1e-3)
True
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

from ..errors import ConfigError

PRECISIONS = ("auto", "bfloat16", "float32")
STEEP = 0.05  # σ_k/σ_1 below this: a bf16 result is redone in fp32 (bf16's Gram matrix resolves ~σ_1/20)
EXACT = 2e-3  # σ_k/σ_1 below this: an fp32 result is replaced by the exact SVD (fp32's G resolves ~σ_1/1000)


def native_bf16(device) -> bool:
    """Whether bf16 matmuls are native (fast) on ``device``: a CUDA GPU with bf16, or a CPU oneDNN uses in bf16."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def compute_dtype(precision: str, device, dtype: torch.dtype) -> torch.dtype:
    """The dtype the multiplications by W run in for ``precision`` (fp64 input always stays fp64)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if dtype == torch.float64:
        return torch.float64
    if precision == "bfloat16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return torch.float32


def tall(matrix: torch.Tensor) -> torch.Tensor:
    """``matrix`` or its transpose, whichever has at least as many rows as columns (same singular values)."""
    return matrix.mT if matrix.shape[-2] < matrix.shape[-1] else matrix


def gram(x: torch.Tensor, blocks: int = 8, out: torch.Tensor | None = None) -> torch.Tensor:
    """xᵀx (``[r, r]``) of a tall ``x`` ``[m, r]`` in x's dtype, computing only the upper block triangle.

    The column blocks i ≤ j are multiplied and the lower triangle is mirrored: (blocks + 1) / (2·blocks) of
    the flops of ``x.mT @ x`` (0.56 for 8 blocks), with GEMMs still large enough to run at full speed.
    """
    r = x.shape[-1]
    edges = [round(i * r / blocks) for i in range(blocks + 1)]
    out = torch.empty(r, r, dtype=x.dtype, device=x.device) if out is None else out
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi == lo:
            continue
        row = out[lo:hi, lo:]  # [hi-lo, r-lo]: row block lo:hi, columns lo..r
        if row.is_contiguous():
            torch.mm(x[:, lo:hi].mT, x[:, lo:], out=row)
        else:
            row.copy_(x[:, lo:hi].mT @ x[:, lo:])
        out[hi:, lo:hi] = row[:, hi - lo:].mT
    return out


def orthonormalize(y: torch.Tensor, spare: torch.Tensor | None = None) -> torch.Tensor:
    """An orthonormal basis ``[b, r, q]`` of the columns of ``y`` ``[b, r, q]`` (Cholesky QR; QR if rank-deficient).

    One Cholesky QR pass costs two GEMMs in y's dtype and leaves an orthogonality error of ~cond(y)²·eps —
    small here, because the Chebyshev filter acts on Ritz vectors and normalizes columns, and harmless: the
    next round re-filters the block, and the final values are a Rayleigh–Ritz on its span that corrects for
    QᵀQ ≠ I. The small factors are fp64. ``spare`` (like ``y``) receives the result.
    """
    spare = torch.empty_like(y) if spare is None else spare
    chol, info = torch.linalg.cholesky_ex((y.mT @ y).double())
    if bool((info != 0).any()):  # dependent columns (a matrix of rank < q): Householder QR copes
        return torch.linalg.qr(y).Q
    eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device).expand_as(chol)
    inv_t = torch.linalg.solve_triangular(chol, eye, upper=False).mT.to(y.dtype)  # L⁻ᵀ
    return torch.bmm(y, inv_t, out=spare)  # y L⁻ᵀ


class _GramTimes:
    """y ↦ G·y for a batch of Gram matrices (bf16, fp32 or fp64) and ``[n, r, q]`` blocks in the work dtype.

    Stages the block in G's dtype through preallocated buffers (sized for the whole batch): on the CPU a
    fresh 12 MB temporary costs ~4 ms in page faults, a quarter of the bf16 product itself.
    """

    def __init__(self, g: torch.Tensor, q: int, work: torch.dtype):
        shape = (g.shape[0], g.shape[1], q)
        self.staged = g.dtype != work
        self.stage = torch.empty(shape, dtype=g.dtype, device=g.device) if self.staged else None
        self.prod = torch.empty(shape, dtype=g.dtype, device=g.device) if self.staged else None

    def __call__(self, g: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if not self.staged:
            return torch.bmm(g, y, out=out)
        n = y.shape[0]
        self.stage[:n].copy_(y)
        return out.copy_(torch.bmm(g, self.stage[:n], out=self.prod[:n]))


def max_filter_gain(dtype: torch.dtype) -> float:
    """Largest amplification T_d(x₁) of the top Ritz direction one filter round may apply in ``dtype`` products.

    A column holds its wanted direction next to round-off in every other direction; the filter multiplies the
    round-off along the top eigenvector by T_d(x₁). In bf16 (8-bit mantissa) more than ~10⁴ buries a wanted
    direction whose eigenvalue sits at the cut; fp32/fp64 allow far more. Steep spectra (and rank-deficient
    matrices, whose cut is ~0) therefore get lower degrees and more rounds instead of one huge polynomial.
    """
    return {torch.bfloat16: 1e4, torch.float16: 1e4}.get(dtype, 1e6)


def chebyshev_subspace(g: torch.Tensor, q: int, k: int | None = None, degrees: Sequence[int] = (4, 6),
                       tol: float = 1e-3, max_rounds: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal bases ``[b, r, q]`` approximating the top-q eigenvectors of the PSD batch ``g`` ``[b, r, r]``,
    and the top-``k`` √Ritz values ``[b, k]`` (σ estimates, descending) of G on them.

    Each round rotates the block to Ritz vectors (eigenvectors of QᵀGQ, as in Zhou & Saad's ChebFSI), filters
    it with T_d((2G − λ_cut)/λ_cut) — |T_d| ≤ 1 on [0, λ_cut], growing like cosh(d·acosh(·)) above — by the
    three-term recurrence, normalizes the columns and orthonormalizes. λ_cut is the block's smallest Ritz
    value, floored at r·eps·λ_top so rank-deficient matrices do not divide by zero. The rounds follow
    ``degrees``; each matrix's degree is capped so the gain stays within :func:`max_filter_gain`. After the
    schedule a matrix goes on (degree ``degrees[-1]``, up to ``max_rounds`` rounds) while its estimated error
    left — the last change of its top-``k`` √Ritz values × ρ/(1 − ρ), with ρ = T_d(x_k)⁻² the rate at which the
    last filter shrank the k-th value's error — exceeds ``tol`` × σ_k. Products by G are in G's dtype.
    """
    work = torch.float64 if g.dtype == torch.float64 else torch.float32
    b, r, _ = g.shape
    k = q if k is None else min(int(k), q)
    tiny = torch.finfo(work).tiny
    log_gain = math.acosh(max_filter_gain(g.dtype))
    gen = torch.Generator(device=g.device).manual_seed(seed)
    times = _GramTimes(g, q, work)
    # persistent [b, r, q] blocks, reused every round (see _GramTimes on fresh allocations)
    basis, g_basis, *bufs = (torch.empty(b, r, q, dtype=work, device=g.device) for _ in range(5))
    torch.randn(b, r, q, generator=gen, out=bufs[0])
    basis.copy_(orthonormalize(bufs[0], bufs[1]))
    times(g, basis, g_basis)
    last = torch.zeros(b, k, dtype=work, device=g.device)  # top-k √Ritz values of the previous round
    rate = torch.ones(b, dtype=work, device=g.device)  # convergence factor of the last round's filter
    values = torch.zeros(b, k, dtype=work, device=g.device)
    active = torch.arange(b, device=g.device)
    rounds = max(int(max_rounds), len(degrees))
    for t in range(rounds + 1):
        whole = len(active) == b  # then no gathers/scatters, which copy whole blocks
        g_act, block, g_block = (g, basis, g_basis) if whole else (g[active], basis[active], g_basis[active])
        ritz, vecs = torch.linalg.eigh(block.mT @ g_block)  # [n, q] ascending, [n, q, q]
        top = ritz.flip(-1)[:, :k].clamp_min(0).sqrt()  # [n, k]
        values[active] = top
        go_on = torch.ones(len(active), dtype=torch.bool, device=g.device)
        if t >= len(degrees):  # estimated error left: last change × ρ/(1 − ρ), ρ the last round's rate
            left = (top - last[active]).abs().amax(-1) * rate[active] / (1 - rate[active]).clamp_min(tiny)
            go_on = left > tol * top[:, -1]
        if t == rounds or not bool(go_on.any()):
            break
        if not bool(go_on.all()):
            active, g_act, ritz, vecs, block, g_block, top = (x[go_on] for x in (active, g_act, ritz, vecs, block,
                                                                                 g_block, top))
            whole = False
        n = len(active)
        last[active] = top
        degree = degrees[min(t, len(degrees) - 1)]
        floor = ritz[:, -1].abs() * r * torch.finfo(torch.float32).eps
        half = torch.maximum(ritz[:, 0], floor).clamp_min(tiny) / 2  # λ_cut / 2, [n]
        x_top = (ritz[:, -1] / half - 1).clamp_min(1 + 1e-6)  # the top Ritz value mapped by (G − c)/e
        allowed = torch.floor(log_gain / torch.acosh(x_top)).clamp(1, degree)  # per-matrix degree, [n]
        x_k = (ritz[:, q - k] / half - 1).clamp_min(1)  # the k-th Ritz value, the slowest wanted one
        rate[active] = torch.cosh(allowed * torch.acosh(x_k)).pow(-2)  # its Ritz value's error shrinks by ρ
        half = half.view(-1, 1, 1)
        # Ritz vectors (the filter then mostly rescales columns); T_0, T_1 of (G − c)/e = G/half − 1 with
        # c = e = λ_cut/2; then T_{j+1} = (2/half)·G·T_j − 2·T_j − T_{j−1}
        prev = torch.bmm(block, vecs, out=bufs[0][:n])
        cur = torch.bmm(g_block, vecs, out=bufs[1][:n]).div_(half).sub_(prev)
        spare = bufs[2][:n]
        for j in range(2, degree + 1):
            nxt = times(g_act, cur, spare).mul_(2 / half).sub_(cur, alpha=2).sub_(prev)
            done = allowed < j  # these matrices stop at their capped degree
            if bool(done.any()):
                nxt[done] = cur[done]
            prev, cur, spare = cur, nxt, prev
        cur.div_(cur.norm(dim=-2, keepdim=True).clamp_min(tiny))
        block = orthonormalize(cur, spare)
        if whole:
            basis.copy_(block)
            times(g, basis, g_basis)
        else:
            basis[active] = block
            g_basis[active] = times(g_act, block, prev)
    return basis, values


def top_singular_values(matrices: torch.Tensor | Sequence[torch.Tensor], k: int, *, oversample: int = 16,
                        degrees: Sequence[int] = (4, 6), precision: str = "auto",
                        seed: int = 0, tol: float = 1e-3) -> torch.Tensor | list[torch.Tensor]:
    """Top-``k`` singular values (descending) of many matrices, all Gram matrices of one size in one batch.

    ``matrices``: a ``[b, m, n]`` tensor (returns ``[b, k]``) or a sequence of 2-D tensors of any shapes on one
    device (returns a list of 1-D tensors of min(k, m_i, n_i) values; no stacked copy of large weights is made).
    All matrices whose min(m, n) is the same share one batched filter — a GPT-2's attention, MLP and embedding
    matrices (all with 768 columns) run as one batch. Values are fp32 (fp64 for fp64 input). Where the block
    ``k + oversample`` would be half of min(m, n) or more, they come from an exact eigendecomposition of WᵀW.
    ``tol``: a matrix keeps filtering while its estimated error left exceeds ``tol`` × σ_k (1e-3 suits ranks and
    norms; the power-law fit of a flat, random-init spectrum moves by % for 1e-4 perturbations — use fp32 and
    ~1e-6 when α must match the full fit, see ``docs/spectra.md``).
    """
    if isinstance(matrices, Mapping):
        raise ConfigError("top_singular_values takes a [b, m, n] tensor or a list of 2-D tensors, got a "
                          f"{type(matrices).__name__}; pass list(d.values()) (the results come back in the same order), "
                          "or model_spectra(d, top_k=k) for results labelled by name.")
    stacked = isinstance(matrices, torch.Tensor)
    if stacked and matrices.ndim != 3:
        raise ConfigError(f"top_singular_values takes a [b, m, n] batch or a list of 2-D matrices, got shape "
                          f"{tuple(matrices.shape)}.")
    mats = list(matrices.unbind(0)) if stacked else list(matrices)
    if not mats:
        raise ConfigError("top_singular_values needs at least one matrix.")
    if any(not isinstance(m, torch.Tensor) or m.ndim != 2 for m in mats):
        got = [tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__ for m in mats]
        raise ConfigError(f"top_singular_values needs 2-D torch tensors, got {got}; convert with torch.as_tensor(x) "
                          "and reshape each to [out, in].")
    empty = [i for i, m in enumerate(mats) if m.numel() == 0]
    if empty:
        raise ConfigError(f"top_singular_values got empty matrices at positions {empty} (shapes "
                          f"{[tuple(mats[i].shape) for i in empty]}); a spectrum needs at least one entry — drop them.")
    if len({m.device for m in mats}) > 1:
        raise ConfigError("top_singular_values needs all matrices on one device; move them with .to(device) first.")
    degrees = tuple(int(d) for d in degrees)
    if int(k) < 1 or int(oversample) < 0 or not degrees or min(degrees) < 1:
        raise ConfigError(f"need k ≥ 1, oversample ≥ 0 and at least one filter degree ≥ 1; got k={k}, "
                          f"oversample={oversample}, degrees={degrees}.")
    out_dtype = torch.float64 if any(m.dtype == torch.float64 for m in mats) else torch.float32
    dtype = compute_dtype(precision, mats[0].device, out_dtype)
    by_size: dict[int, list[int]] = {}
    for i, m in enumerate(mats):
        by_size.setdefault(min(m.shape), []).append(i)
    values: list[torch.Tensor | None] = [None] * len(mats)
    for r, idx in by_size.items():
        group, k_r = [mats[i] for i in idx], min(int(k), r)
        got = _top_values(r, group, k_r, int(oversample), degrees, dtype, out_dtype, seed, tol)
        if dtype == torch.bfloat16:  # steep spectra: bf16's G cannot resolve them
            steep = [j for j, v in enumerate(got) if not bool(v[-1] >= STEEP * v[0])]
            if steep:
                redo = _top_values(r, [group[j] for j in steep], k_r, int(oversample), degrees, torch.float32,
                                   out_dtype, seed, tol)
                for j, v in zip(steep, redo):
                    got[j] = v
        if out_dtype == torch.float32:  # nor can fp32's G resolve σ_k ≪ σ_1
            for j, v in enumerate(got):
                if not bool(v[-1] >= EXACT * v[0]):
                    got[j] = torch.linalg.svdvals(tall(group[j]).to(out_dtype))[:k_r]
        for i, v in zip(idx, got):
            values[i] = v
    return torch.stack(values) if stacked else values


def _top_values(r: int, mats: list[torch.Tensor], k: int, oversample: int, degrees: tuple[int, ...],
                dtype: torch.dtype, out_dtype: torch.dtype, seed: int, tol: float = 1e-3) -> list[torch.Tensor]:
    """Top-k values of matrices that all have min(m, n) = r (their Gram matrices are all [r, r])."""
    q = min(k + oversample, r)
    if 2 * q >= r:  # the block would be most of the space: the exact eigenvalues of G are as cheap
        grams = torch.stack([gram(tall(m).to(out_dtype)) for m in mats])  # [b, r, r]
        _check_gram(grams)
        lam = torch.linalg.eigvalsh(grams.double()).flip(-1)[..., :k]
        return list(lam.clamp_min(0).sqrt().to(out_dtype).unbind(0))
    cast = _Caster(mats, dtype)
    grams = torch.empty(len(mats), r, r, dtype=dtype, device=mats[0].device)
    partial = None
    for m, out in zip(mats, grams.unbind(0)):
        chunks = cast.chunks(m)
        if len(chunks) == 1:
            gram(chunks[0](), out=out)
            continue
        total = torch.zeros(r, r, dtype=out_dtype, device=out.device)  # a tall matrix: sum the rows' Gram matrices
        partial = torch.empty_like(out) if partial is None else partial
        for chunk in chunks:
            total += gram(chunk(), out=partial)
        out.copy_(total)
    _check_gram(grams)
    basis, from_gram = chebyshev_subspace(grams, q, k, degrees, tol=tol, seed=seed)  # [b, r, q], [b, k]
    if dtype == torch.bfloat16:
        # G's rounding to bf16 moves a Ritz value by ~2⁻⁹·λ_mean/√r: below W's own rounding unless the
        # spectrum is steep, and "auto" redoes steep matrices in fp32. No second pass over W.
        return list(from_gram.to(out_dtype).unbind(0))
    values = []
    for m, v in zip(mats, basis.unbind(0)):
        ritz = torch.zeros(q, q, dtype=torch.float64, device=v.device)  # (W Q)ᵀ(W Q), summed over row chunks
        for chunk in cast.chunks(m):
            proj = chunk() @ v  # [rows, q]
            ritz += (proj.mT @ proj).double()
        # Rayleigh–Ritz through W: rounding in W·Q is relative to each column (≈ σ_i u_i), so values far
        # below σ_1 keep the relative accuracy that G's absolute round-off (~eps·σ_1²) would take from them
        # Rayleigh–Ritz on span(Q) exactly even if QᵀQ ≠ I (one Cholesky QR pass): the pencil (S, QᵀQ) has the
        # eigenvalues of L⁻¹ S L⁻ᵀ with QᵀQ = L Lᵀ
        vd = v.double()
        inv = torch.linalg.inv(torch.linalg.cholesky(vd.mT @ vd))
        lam = torch.linalg.eigvalsh(inv @ ritz @ inv.mT).flip(-1)[:k]
        values.append(lam.clamp_min(0).sqrt().to(out_dtype))
    return values


class _Caster:
    """Row chunks of ``tall(m)`` in the compute dtype, each written into one small reused buffer.

    Casting is done twice per matrix (for G and for W·Q) instead of keeping a cast copy of every weight. Fresh
    allocations of that size (248 MB for GPT-2-small in bf16) cost 0.1–0.7 s in page faults; a chunk of at
    most ``chunk_elements`` stays in cache between the cast and the multiplication that reads it. Copies
    follow m's memory order (a Conv1D weight's transposed view stays a transposed view): transposing while
    copying is 10× slower.
    """

    def __init__(self, mats: list[torch.Tensor], dtype: torch.dtype, chunk_elements: int = 1 << 22):
        self.dtype, self.chunk_elements = dtype, int(chunk_elements)
        self.buf = None
        if any(m.dtype != dtype for m in mats):
            size = max(min(m.numel(), max(self.chunk_elements, min(m.shape))) for m in mats)
            self.buf = torch.empty(size, dtype=dtype, device=mats[0].device)

    def chunks(self, m: torch.Tensor) -> list:
        """Callables returning consecutive row blocks ``[rows, r]`` of ``tall(m)`` cast (call each just before use)."""
        x = tall(m)
        rows = max(1, self.chunk_elements // x.shape[1])
        return [lambda lo=lo: self._cast(x[lo: lo + rows]) for lo in range(0, x.shape[0], rows)]

    def _cast(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == self.dtype:
            return x
        if not x.is_contiguous() and x.mT.stride(-1) == 1:  # a transposed view: copy in the source's order
            return self.buf[: x.numel()].view(x.mT.shape).copy_(x.mT).mT
        return self.buf[: x.numel()].view(x.shape).copy_(x)


def _check_gram(grams: torch.Tensor) -> None:
    """A NaN/inf anywhere in W makes a diagonal entry of WᵀW NaN/inf: one cheap check instead of a pass over W."""
    if not bool(torch.isfinite(grams.diagonal(dim1=-2, dim2=-1)).all()):
        raise ConfigError("a matrix contains NaN or inf entries (or entries so large that σ² overflows); spectra of "
                          "non-finite weights are undefined (the run probably diverged — load an earlier checkpoint).")
