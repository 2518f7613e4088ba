"""Heavy-tailed self-regularization metrics of a weight matrix's eigenvalue spectrum (WeightWatcher's family).

The spectrum here is the ESD of the correlation matrix WᵀW: λ_i = σ_i², **not** divided by N (WeightWatcher
0.7.7 comments its 1/N normalisation out; every metric below uses its convention, so the values are directly
comparable with ``WeightWatcher.analyze()`` — differences are listed in ``docs/spectra.md``).

* :func:`fit_power_law` — α, λ_min (x_min) and the Kolmogorov–Smirnov distance of a power-law tail;
* :func:`norm_metrics` — ``log_norm`` = log10 Σλ = log10 ‖W‖_F², ``log_spectral_norm`` = log10 λ_max,
  ``alpha_weighted`` = α·log10 λ_max, ``log_alpha_norm`` = log10 Σλ^α;
* :func:`mp_fit` — the Marchenko–Pastur bulk: its scale σ, edge λ+ (``mp_bulk_max``), the number of spikes
  above λ+ plus the Tracy–Widom margin, and ``mp_softrank`` = λ+/λ_max;
* :func:`randomized_check` — the same matrix with its entries permuted: ``rand_distance`` (Jensen–Shannon
  distance between the two ESDs) and ``num_traps`` (spikes of the *randomized* ESD: a permutation destroys
  correlations, so a spike that survives it comes from a few huge entries — a "correlation trap");
* :func:`heavytail_metrics` — all of them from singular values, for the full spectrum or only its top k.

Top-k spectra (``model_spectra(top_k=...)``, ``SpectraProbe(top_k=...)``): the tail fit only tries λ_min among
the top k eigenvalues — exactly the full fit restricted to those candidates, since a candidate's α and KS
distance depend only on the eigenvalues above it; Σλ = ‖W‖_F² is exact; Σλ^α sums the top k (a lower bound);
the MP bulk, which needs the whole spectrum to be *fitted*, is instead taken from the known variance of the
bulk — σ² = (‖W‖_F² − Σ spikes)/(N·(M − #spikes)), iterated — and the aspect ratio, which needs no bulk.

>>> import numpy as np
>>> lam = (1 - np.random.default_rng(0).random(4000)) ** (-1 / 1.5)   # α = 2.5 Pareto samples
>>> round(fit_power_law(lam).alpha, 1)
2.5
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

OVER_TRAINED = 2.0  # WeightWatcher's guidance: α below this, over-trained / over-fit layer
UNDER_TRAINED = 6.0  # α above this: under-trained, or the tail fit is not meaningful
MIN_TAIL = 10  # fewer tail eigenvalues than this: the α estimate is too noisy to read

FULL_VARS = ("alpha", "alpha_xmin", "alpha_ks", "num_pl_spikes", "alpha_weighted", "log_norm", "log_spectral_norm",
             "log_alpha_norm", "mp_sigma", "mp_bulk_max", "num_spikes", "mp_softrank")
RANDOM_VARS = ("rand_distance", "num_traps")
LONG_NAMES = {
    "alpha": "power-law exponent α of the ESD tail", "alpha_xmin": "λ_min of the power-law tail",
    "alpha_ks": "KS distance of the power-law fit", "num_pl_spikes": "eigenvalues in the power-law tail",
    "alpha_weighted": "α·log10 λ_max", "log_norm": "log10 ‖W‖_F²", "log_spectral_norm": "log10 λ_max",
    "log_alpha_norm": "log10 Σλ^α", "mp_sigma": "Marchenko–Pastur scale σ (ESD rescaled to mean 1)",
    "mp_bulk_max": "Marchenko–Pastur bulk edge λ+", "num_spikes": "eigenvalues above the MP edge (+ Tracy–Widom)",
    "mp_softrank": "MP soft rank λ+/λ_max", "rand_distance": "Jensen–Shannon distance, ESD vs randomized ESD",
    "num_traps": "spikes of the randomized ESD (correlation traps)"}


def _values(x) -> np.ndarray:
    """A flat fp64 numpy copy of a tensor, array or sequence (any strides, any device)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy().ravel()
    return np.array(x, dtype=np.float64).ravel()


# ---------------------------------------------------------------------------------------------- power law
class PowerLawFit(NamedTuple):
    """A power-law fit of the eigenvalue tail: exponent, lower cut-off, KS distance, tail size."""

    alpha: float
    xmin: float
    ks_distance: float
    n_tail: int


def fit_power_law(eigenvalues, threshold: float | None = None) -> PowerLawFit:
    """Fit p(λ) ∝ λ^(−α), λ ≥ λ_min, to the tail of ``eigenvalues`` (Clauset–Shalizi–Newman 2009).

    For every candidate cut-off λ_min among the eigenvalues (all but the largest), the continuous
    maximum-likelihood exponent of the tail {λ ≥ λ_min} (n values) is α = 1 + n / Σ ln(λ/λ_min); the
    cut-off kept is the one whose Kolmogorov–Smirnov distance between the tail's empirical CDF and
    the fitted CDF 1 − (λ/λ_min)^(1−α) is smallest. This is WeightWatcher's default
    (``WWFit.fit_power_law_standard``); the differences are documented in ``docs/spectra.md``:
    eigenvalues at or below ``threshold`` (default: λ_max · 1e-12, i.e. numerically zero; WeightWatcher
    uses an absolute 1e-5) are dropped, and tails of fewer than 20 eigenvalues use the same estimator
    (WeightWatcher switches to a bias-corrected variant). Needs ≥ 3 positive eigenvalues, else NaN.

    Given only the top k eigenvalues, the result is the full fit restricted to the top-k candidates (a
    candidate's α and KS distance depend only on the eigenvalues at and above it).
    """
    lam = np.sort(_values(eigenvalues))
    if lam.size == 0 or not np.isfinite(lam).all():
        return PowerLawFit(math.nan, math.nan, math.nan, 0)
    thr = lam[-1] * 1e-12 if threshold is None else float(threshold)
    lam = lam[lam > max(thr, 0.0)]
    n_all = lam.size
    if n_all < 3:
        return PowerLawFit(math.nan, math.nan, math.nan, int(n_all))
    log = np.log(lam)
    # tail i = lam[i:], n_i = N − i values, for i in 0..N−2
    n = (n_all - np.arange(n_all - 1)).astype(np.float64)  # [N-1]
    suffix = np.cumsum(log[::-1])[::-1][: n_all - 1]  # Σ_{j ≥ i} ln λ_j
    denom = suffix - n * log[: n_all - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = 1.0 + n / denom
    ks = np.ones(n_all - 1)
    ok = (alphas > 1.0) & np.isfinite(alphas)
    # KS distance of every candidate i: max_{j ≥ i} |1 − (λ_j/λ_i)^(1−α_i) − (j − i)/n_i|, in blocks of
    # candidates (an [i, j] table of a few MB) instead of a Python loop
    # (blocks of ≤ 128 candidates, each against the columns j ≥ its first i only: about half the table)
    step = max(1, min(128, (1 << 21) // n_all))
    for lo in range(0, n_all - 1, step):
        i = np.arange(lo, min(lo + step, n_all - 1))
        j = np.arange(lo, n_all)
        expo = (1.0 - alphas[i])[:, None] * (log[None, lo:] - log[i][:, None])  # (1 − α_i)·ln(λ_j/λ_i)
        with np.errstate(over="ignore", invalid="ignore"):
            diff = np.abs(1.0 - np.exp(expo) - (j[None, :] - i[:, None]) / n[i][:, None])
        diff[j[None, :] < i[:, None]] = 0.0  # only the tail j ≥ i counts
        ks[i] = np.where(ok[i], diff.max(1), 1.0)
    best = int(np.argmin(ks))
    return PowerLawFit(float(alphas[best]), float(lam[best]), float(ks[best]), int(n[best]))


def alpha_warning(alpha: float, n_tail: int) -> str:
    """Why an α should not be read at face value ('' when it is in the meaningful range).

    >>> alpha_warning(1.6, 50), alpha_warning(3.0, 50)
    ('α < 2: over-trained (or the tail is not a power law)', '')
    """
    if not np.isfinite(alpha):
        return "no power-law fit (too few positive eigenvalues)"
    if n_tail < MIN_TAIL:
        return f"only {n_tail} eigenvalues in the tail (< {MIN_TAIL}): α is noise"
    if alpha < OVER_TRAINED:
        return "α < 2: over-trained (or the tail is not a power law)"
    if alpha > UNDER_TRAINED:
        return "α > 6: under-trained, or no power-law tail (random-like bulk)"
    return ""


# ---------------------------------------------------------------------------------------------- norms
def norm_metrics(lam: np.ndarray, alpha: float, total: float | None = None) -> dict[str, float]:
    """WeightWatcher's norm metrics of eigenvalues ``lam`` (λ = σ²): ``log_norm`` (log10 Σλ, or log10 ``total``
    when given — ‖W‖_F² for a top-k spectrum), ``log_spectral_norm``, ``alpha_weighted``, ``log_alpha_norm``."""
    lam = np.asarray(lam, dtype=np.float64)
    top = float(lam.max())
    total = float(lam.sum()) if total is None else float(total)
    log_top = math.log10(top) if top > 0 else -math.inf
    with np.errstate(divide="ignore", invalid="ignore"):  # log10 Σλ^α = α log10 λ_max + log10 Σ(λ/λ_max)^α
        log_alpha = alpha * log_top + math.log10(float(np.sum((lam / top) ** alpha))) if top > 0 else math.nan
    return {"log_norm": math.log10(total) if total > 0 else -math.inf, "log_spectral_norm": log_top,
            "alpha_weighted": alpha * log_top, "log_alpha_norm": log_alpha}


# ---------------------------------------------------------------------------------------------- Marchenko–Pastur
class MPFit(NamedTuple):
    """A Marchenko–Pastur fit of the bulk: scale σ (of the ESD rescaled to mean 1), edges in λ units, spikes."""

    sigma: float
    bulk_max: float
    bulk_min: float
    num_spikes: int
    softrank: float


def _mp_density(x: np.ndarray, q: float, sigma: np.ndarray) -> np.ndarray:
    """MP density of eigenvalues (aspect ratio q = N/M ≥ 1, scale σ) at x ``[g]``, 0 outside the bulk; ``sigma`` [s]."""
    s2 = (sigma ** 2)[:, None]
    hi, lo = s2 * (1 + q ** -0.5) ** 2, s2 * (1 - q ** -0.5) ** 2
    inside = (x > lo) & (x < hi)
    root = np.sqrt(np.clip((hi - x) * (x - lo), 0.0, None))
    return np.divide(root * q, 2 * np.pi * s2 * x, out=np.zeros(inside.shape), where=inside)


def _linear_kde(data: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """Σ_i max(0, 1 − |g − x_i|/h) / (n h) at every g — the linear-kernel density estimate (sklearn's
    ``KernelDensity(kernel="linear")``), by prefix sums over the sorted data instead of an n × g table."""
    x = np.sort(data)
    pre = np.concatenate([[0.0], np.cumsum(x)])
    lo, mid, hi = (np.searchsorted(x, grid + d, side=s) for d, s in ((-bandwidth, "right"), (0, "right"),
                                                                      (bandwidth, "left")))
    left_n, left_s = mid - lo, pre[mid] - pre[lo]  # points in (g − h, g]: 1 − (g − x)/h each
    right_n, right_s = hi - mid, pre[hi] - pre[mid]  # points in (g, g + h): 1 − (x − g)/h each
    total = left_n + right_n - (left_n * grid - left_s) / bandwidth - (right_s - right_n * grid) / bandwidth
    return np.clip(total, 0.0, None) / (x.size * bandwidth)


def _fit_sigma(x: np.ndarray, q: float, bandwidth: float = 0.1) -> float:
    """σ minimising the squared difference between the MP density (the quarter circle of √x for a square matrix)
    and a linear-kernel density estimate of ``x`` (mean-1 eigenvalues) — WeightWatcher's objective: a grid of
    σ ∈ [0.05, 2)·σ₀ in steps of 0.01·σ₀ (σ₀ puts the edge at λ_max), then a Nelder–Mead polish."""
    from scipy import optimize

    square = q == 1.0
    data = np.sqrt(x) if square else x
    grid = np.linspace(0.0, data.max() + 0.5, 1000)
    dens = _linear_kde(data, grid, bandwidth)
    keep = dens > 0.01  # where the estimate is ~0 the residual is 0 by definition
    grid, dens = grid[keep], dens[keep]
    peak = grid[np.argmax(dens)]

    def cost(sigma: np.ndarray) -> np.ndarray:
        sigma = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
        if square:  # WeightWatcher's quarter-circle law of the singular values: (1/πσ²)·√(4 − s²)
            model = np.sqrt(np.clip(4 - grid ** 2, 0.0, None)) / (np.pi * sigma[:, None] ** 2)
            return ((model - dens) ** 2).sum(1)
        hi, lo = sigma ** 2 * (1 + q ** -0.5) ** 2, sigma ** 2 * (1 - q ** -0.5) ** 2
        bad = (hi < peak) | (hi > grid.max()) | (lo > peak)  # an edge that misses the bulk: a flat penalty
        res = np.full(sigma.shape, 1000.0 ** 2 * grid.size)
        if not bad.all():
            res[~bad] = ((_mp_density(grid, q, sigma[~bad]) - dens) ** 2).sum(1)
        return res

    s0 = math.sqrt(x.max()) / (1 + q ** -0.5)
    sigmas = np.arange(0.05 * s0, 2.0 * s0, 0.01 * s0)
    start = sigmas[int(np.argmin(cost(sigmas)))]
    return float(optimize.fmin(lambda s: float(cost(s)[0]), start, disp=False)[0])


def mp_fit(eigenvalues, rows: int, cols: int, total: float | None = None, method: str = "fit") -> MPFit:
    """Marchenko–Pastur fit of the bulk of the ESD ``eigenvalues`` (λ = σ² of an ``rows × cols`` matrix).

    The ESD is rescaled to mean 1 (λ·M/Σλ, M = min(rows, cols); ``total`` = Σλ = ‖W‖_F² when only the top
    eigenvalues are given). ``method="fit"`` fits the scale σ to the whole spectrum's density
    (WeightWatcher's ``mp_fit``; needs every eigenvalue); ``"variance"`` takes σ² = bulk energy / bulk size —
    (Σλ − Σ spikes)/(M − #spikes) after rescaling, iterated until the spikes are stable — which needs only Σλ
    and the eigenvalues above the edge. Edge λ+ = σ²(1 + 1/√Q)², Q = N/M; a spike is an eigenvalue above
    λ+ plus the Tracy–Widom margin √(λ+^(2/3) M^(−2/3) / √Q). ``softrank`` = λ+/λ_max.

    >>> import torch
    >>> w = torch.randn(400, 200, generator=torch.Generator().manual_seed(0))
    >>> lam = torch.linalg.svdvals(w).double().numpy() ** 2
    >>> fit = mp_fit(lam, 400, 200); fit.num_spikes, round(fit.sigma, 1)
    (0, 1.0)
    """
    if method not in ("fit", "variance"):
        from ..errors import ConfigError

        raise ConfigError(f"mp_fit method must be 'fit' or 'variance', got {method!r}.")
    lam = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())[::-1]
    n, m = max(rows, cols), min(rows, cols)
    q = n / m
    total = float(lam.sum()) if total is None else float(total)
    if lam.size == 0 or not total > 0:
        return MPFit(math.nan, math.nan, math.nan, 0, math.nan)
    scale = m / total  # Wscale² of WeightWatcher: the rescaled ESD has mean 1
    x = lam * scale
    edge = lambda s: (s * (1 + q ** -0.5)) ** 2  # noqa: E731
    margin = lambda hi: math.sqrt(hi ** (2 / 3) * m ** (-2 / 3) / math.sqrt(q))  # noqa: E731
    if method == "fit":
        sigma = _fit_sigma(x, q)
    else:
        spikes, sigma = 0, 1.0
        for _ in range(20):
            sigma = math.sqrt(max(m - float(x[:spikes].sum()), 0.0) / max(m - spikes, 1))
            found = int(np.sum(x > edge(sigma) + margin(edge(sigma))))
            if found == spikes:
                break
            spikes = found
    hi, lo = edge(sigma), (sigma * (1 - q ** -0.5)) ** 2
    count = int(np.sum(x > hi + margin(hi)))
    return MPFit(sigma, hi / scale, lo / scale, count, hi / float(x[0]))


# ---------------------------------------------------------------------------------------------- randomized ESD
def permuted(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A copy of each matrix of ``batch`` (``[..., m, n]``) with its entries randomly permuted by ``generator``.

    Permuting keeps every entry (and ‖W‖_F) but destroys all correlations: the result's ESD is Marchenko–Pastur
    unless a few entries are huge. The permutations are drawn on ``generator``'s device (the probe's own CPU
    generator, so the global RNG is untouched) and applied on ``batch``'s device.
    """
    flat = batch.reshape(-1, batch.shape[-2] * batch.shape[-1])
    dev = generator.device
    perm = torch.stack([torch.randperm(flat.shape[1], generator=generator, device=dev) for _ in range(flat.shape[0])])
    return torch.gather(flat, 1, perm.to(flat.device)).reshape(batch.shape)


def rand_distance(lam: np.ndarray, rand_lam: np.ndarray) -> float:
    """WeightWatcher's ``rand_distance``: the Jensen–Shannon distance (natural log) between the two sorted
    eigenvalue vectors, each normalised to sum 1 (as WeightWatcher's ``jensen_shannon_distance``). ≈ 0 for a
    random matrix; larger the more the spectrum differs from its randomized self. Needs every eigenvalue."""
    from scipy.spatial.distance import jensenshannon

    a, b = np.sort(np.asarray(lam, dtype=np.float64)), np.sort(np.asarray(rand_lam, dtype=np.float64))
    if a.size != b.size or a.size == 0 or not (a.sum() > 0 and b.sum() > 0):
        return math.nan
    return float(jensenshannon(a, b))


# ---------------------------------------------------------------------------------------------- all of them
def heavytail_metrics(s, rows: int, cols: int, total: float | None = None, top_k: bool = False,
                      rand_s=None) -> dict[str, float]:
    """Every metric of the family (``FULL_VARS``, plus ``RANDOM_VARS`` given ``rand_s``) from singular values.

    ``s``: all singular values of a ``rows × cols`` matrix, or with ``top_k=True`` only the top ones and
    ``total`` = ‖W‖_F² (then α is fitted on the top values, ``log_alpha_norm`` sums them and the MP bulk comes
    from the variance, see the module docstring). ``rand_s``: singular values (all, or the top ones) of the
    randomized matrix. Counts are floats (NaN where undefined) so they stack into records.

    >>> import torch
    >>> w = torch.randn(300, 100, generator=torch.Generator().manual_seed(0))
    >>> m = heavytail_metrics(torch.linalg.svdvals(w), 300, 100)
    >>> m["num_spikes"], round(m["log_norm"], 2)       # no spikes; log10 ‖W‖_F² = log10(≈ 30000)
    (0.0, 4.48)
    """
    sv = np.sort(np.abs(_values(s)))[::-1]
    sv = sv[np.isfinite(sv)]
    out = dict.fromkeys(FULL_VARS, math.nan)
    if sv.size == 0 or not sv[0] > 0:
        return {**out, **(dict.fromkeys(RANDOM_VARS, math.nan) if rand_s is not None else {})}
    lam = sv ** 2
    if not top_k:
        total = float(lam.sum())
    elif total is None:
        from ..errors import ConfigError

        raise ConfigError("heavytail_metrics(top_k=True) needs total = ‖W‖_F² (the top values alone do not give it).")
    fit = fit_power_law(lam)
    out.update(alpha=fit.alpha, alpha_xmin=fit.xmin, alpha_ks=fit.ks_distance, num_pl_spikes=float(fit.n_tail))
    out.update(norm_metrics(lam, fit.alpha, total))
    mp = mp_fit(lam, rows, cols, total, method="variance" if top_k else "fit")
    out.update(mp_sigma=mp.sigma, mp_bulk_max=mp.bulk_max, num_spikes=float(mp.num_spikes), mp_softrank=mp.softrank)
    if rand_s is not None:
        rand_lam = _values(rand_s) ** 2
        traps = mp_fit(rand_lam, rows, cols, total, method="variance" if top_k else "fit")  # permuting keeps ‖W‖_F
        out.update(rand_distance=math.nan if top_k else rand_distance(lam, rand_lam), num_traps=float(traps.num_spikes))
    return out
