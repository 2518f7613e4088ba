"""What an attacker can still tell: membership inference, privacy leakage and memorization.

Members are the **forget** facts (the target trained on them), non-members the **holdout** facts (same
templates, never trained on by any model: :meth:`FactsBenchmark.holdout_ids`). Every attack turns one
answer into a score from the per-token log-probabilities of the answer tokens; here **lower = looks
more like a member** for every score (a loss-like convention):

=================  ==========================================================================  ==========
attack             score of an answer y (tokens t = 1..n, p_t = π(y_t | x, y_<t))               reference
=================  ==========================================================================  ==========
``loss``           −(1/n) Σ_t log p_t  (mean NLL)                                                Yeom 2018
``zlib``           mean NLL / zlib-compressed length (bytes) of the answer text                 Carlini 2021
``min_k``          −mean of the ⌊k·n⌋ (≥ 1) lowest log p_t  (k = 100 % is ``loss``)              Shi 2024
``min_k_plus_plus``  −mean of the ⌊k·n⌋ lowest z_t = (log p_t − μ_t)/σ_t, μ_t, σ_t the mean and   Zhang 2024
                   std of log p(v) under p(· | x, y_<t)
``gradnorm``       ‖∇_θ mean NLL(y)‖₂ over all parameters (one backward per answer)             Maini 2024
``reference``      mean NLL_model − mean NLL_oracle (the oracle as reference model)             Carlini 2022
=================  ==========================================================================  ==========

``mia_<attack>_auc`` = P(score(forget) < score(holdout)) + ½·P(tie), the Mann–Whitney U statistic over
m·n pairs (ties count ½): 1 = the forget set is perfectly detectable, 0.5 = indistinguishable from
never-seen data. :func:`auc_ci` gives DeLong's normal interval. **privleak** (MUSE) =
(AUC_model − AUC_oracle) / AUC_oracle for the ``privleak_attack`` (default Min-K %, MUSE's choice):
0 = leaks like the retrained model, > 0 = the forget set is still detectable (under-unlearned), < 0 =
over-unlearned (the forget set now stands out by being *less* likely than unseen data).

Memorization of the forget answers: **exact memorization** = teacher-forced argmax match rate over answer
tokens (mean over answers); **extraction strength** = 1 − k*/n, k* the shortest prefix of the answer
after which greedy decoding reproduces the rest (0 if even the last token is not). Greedy decoding from
a true prefix reproduces the true suffix iff every teacher-forced argmax from there on is right (each
generated token is then the true one, so the context stays the true one), so k* is read from one
teacher-forced pass: one past the last wrong position (tested against ``generate``).

>>> import numpy as np
>>> auc(np.array([0.1, 0.2]), np.array([0.3, 0.4]))      # every member scores lower: AUC 1
1.0
>>> auc(np.array([1.0, 1.0]), np.array([1.0, 1.0]))      # all tied: 0.5
0.5
"""

from __future__ import annotations

import contextlib
import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm, rankdata

from ..data.base import to_device
from ..errors import ConfigError

ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus", "gradnorm", "reference")


@dataclass
class TokenStats:
    """Per answer token of ``n`` rows (``[n, L]``, zero / False off the answers)."""

    logp: np.ndarray      # log p_t of the true token
    z: np.ndarray         # (log p_t − μ_t) / σ_t  (Min-K %++)
    correct: np.ndarray   # argmax == true token (teacher forced)
    mask: np.ndarray      # answer token (bool)

    @property
    def nll(self) -> np.ndarray:
        """Mean NLL per answer ``[n]``."""
        return -(self.logp * self.mask).sum(1) / np.maximum(self.mask.sum(1), 1)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def _eval(model):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@torch.no_grad()
def token_stats(model, tensors: dict, batch_size: int = 64) -> TokenStats:
    """One teacher-forced pass over ``tensors`` (``input_ids``/``attention_mask``/``labels``)."""
    dev = _device(model)
    parts = {k: [] for k in ("logp", "z", "correct", "mask")}
    with _eval(model):
        for i in range(0, len(tensors["input_ids"]), batch_size):
            b = to_device({k: tensors[k][i : i + batch_size] for k in ("input_ids", "attention_mask", "labels")}, dev)
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
            target = b["labels"][:, 1:]  # [B, T-1]
            mask = target != -100
            logq = torch.log_softmax(logits, -1)  # [B, T-1, V]
            lp = logq.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [B, T-1]
            q = logq.exp()
            mu = (q * logq).sum(-1)  # E_v[log p(v)]  [B, T-1]
            sigma = ((q * logq.square()).sum(-1) - mu.square()).clamp(min=1e-12).sqrt()
            parts["logp"].append((lp * mask).cpu())
            parts["z"].append(((lp - mu) / sigma * mask).cpu())
            parts["correct"].append(((logits.argmax(-1) == target) & mask).cpu())
            parts["mask"].append(mask.cpu())
    cat = {k: torch.cat(v).numpy() for k, v in parts.items()}
    return TokenStats(cat["logp"].astype(np.float64), cat["z"].astype(np.float64), cat["correct"], cat["mask"])


def min_k_score(values: np.ndarray, mask: np.ndarray, k: float) -> np.ndarray:
    """−mean of the ⌊k·n⌋ (at least 1) lowest masked ``values`` of each row ``[n]``."""
    if not 0 < k <= 1:
        raise ConfigError(f"k (the Min-K % fraction) must be in (0, 1], got {k!r}; e.g. 0.4 as in MUSE.")
    out = np.empty(len(values))
    for i, (v, m) in enumerate(zip(values, mask)):
        row = np.sort(v[m])
        out[i] = -row[: max(1, int(len(row) * k))].mean() if len(row) else 0.0
    return out


def zlib_bytes(texts: list[str]) -> np.ndarray:
    return np.array([len(zlib.compress(t.encode("utf-8"))) for t in texts], dtype=np.float64)


def gradnorm_scores(model, tensors: dict) -> np.ndarray:
    """‖∇_θ mean NLL‖₂ of each row over all parameters (``requires_grad`` switched on for the call and
    restored; ``.grad`` is not touched)."""
    from .losses import mean_token_nll

    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    dev = _device(model)
    out = []
    try:
        for p in params:
            p.requires_grad_(True)
        with _eval(model), torch.enable_grad():
            for i in range(len(tensors["input_ids"])):
                row = to_device({k: tensors[k][i : i + 1] for k in ("input_ids", "attention_mask", "labels")}, dev)
                grads = torch.autograd.grad(mean_token_nll(model, row), params, allow_unused=True)
                out.append(math.sqrt(sum(float(g.float().square().sum()) for g in grads if g is not None)))
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    return np.array(out)


def auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """P(member score < non-member score) + ½·P(tie): Mann–Whitney U / (m·n), from mid-ranks."""
    m, n = len(members), len(nonmembers)
    if m == 0 or n == 0:
        raise ConfigError("An AUC needs at least one member (forget) and one non-member (holdout) score.")
    ranks = rankdata(np.concatenate([-np.asarray(members, float), -np.asarray(nonmembers, float)]))
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * n))


def auc_ci(members: np.ndarray, nonmembers: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """``(auc, low, high)``: DeLong's variance of the Mann–Whitney AUC, normal interval clipped to [0, 1]."""
    x, y = -np.asarray(members, float), -np.asarray(nonmembers, float)  # higher = member, as DeLong writes it
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])  # [m, n]
    a = float(psi.mean())
    v10, v01 = psi.mean(1), psi.mean(0)
    var = (v10.var(ddof=1) / len(x) if len(x) > 1 else 0.0) + (v01.var(ddof=1) / len(y) if len(y) > 1 else 0.0)
    half = float(norm.ppf(0.5 + level / 2)) * math.sqrt(var)
    return a, max(0.0, a - half), min(1.0, a + half)


def answer_texts(bench, fact_ids: list[int]) -> list[str]:
    return [bench.facts[i].answer for i in fact_ids]


def attack_scores(stats: TokenStats, texts: list[str], k: float = 0.4, ref_nll: np.ndarray | None = None,
                  gradnorm: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every attack's score per row (lower = member); ``reference`` / ``gradnorm`` only when given."""
    nll = stats.nll
    out = {"loss": nll, "zlib": nll / zlib_bytes(texts), "min_k": min_k_score(stats.logp, stats.mask, k),
           "min_k_plus_plus": min_k_score(stats.z, stats.mask, k)}
    if gradnorm is not None:
        out["gradnorm"] = gradnorm
    if ref_nll is not None:
        out["reference"] = nll - ref_nll
    return out


def extraction_strength(stats: TokenStats) -> np.ndarray:
    """1 − k*/n per row, k* = one past the last wrong teacher-forced argmax (the shortest prefix from which
    greedy decoding reproduces the rest of the answer)."""
    out = np.empty(len(stats.mask))
    for i, (c, m) in enumerate(zip(stats.correct, stats.mask)):
        ok = c[m]
        wrong = np.flatnonzero(~ok)
        k_star = int(wrong[-1]) + 1 if len(wrong) else 0
        out[i] = 1.0 - k_star / max(len(ok), 1)
    return out


def exact_memorization(stats: TokenStats) -> np.ndarray:
    """Teacher-forced argmax match rate over each row's answer tokens ``[n]``."""
    return (stats.correct & stats.mask).sum(1) / np.maximum(stats.mask.sum(1), 1)


@dataclass
class OracleReference:
    """What the privacy metrics need from the oracle, computed once: its per-answer NLL (the Reference
    attack) and its AUC per attack (privleak's denominator)."""

    nll_forget: np.ndarray
    nll_holdout: np.ndarray
    aucs: dict


def oracle_reference(oracle, bench, forget_ids: list[int], holdout_ids: list[int], k: float = 0.4,
                     gradnorm: bool = True) -> OracleReference:
    sf, sh = token_stats(oracle, bench.tensors(forget_ids)), token_stats(oracle, bench.tensors(holdout_ids))
    gf = gradnorm_scores(oracle, bench.tensors(forget_ids)) if gradnorm else None
    gh = gradnorm_scores(oracle, bench.tensors(holdout_ids)) if gradnorm else None
    f = attack_scores(sf, answer_texts(bench, forget_ids), k, sf.nll, gf)
    h = attack_scores(sh, answer_texts(bench, holdout_ids), k, sh.nll, gh)
    return OracleReference(sf.nll, sh.nll, {a: auc(f[a], h[a]) for a in f})


def privacy_metrics(model, bench, forget_ids: list[int], holdout_ids: list[int], reference: OracleReference | None = None,
                    k: float = 0.4, gradnorm: bool = True, privleak_attack: str = "min_k",
                    forget_stats: TokenStats | None = None, ci: bool = True) -> dict[str, float]:
    """Scalars: ``mia_<attack>_auc`` (with ``ci``, also ``_low``/``_high``: DeLong 95 % bounds), ``privleak``
    (with a reference), ``extraction_strength`` and ``exact_memorization`` (means over forget answers).

    ``forget_stats`` reuses a teacher-forced pass over the forget answers the caller already made.
    """
    if privleak_attack not in ATTACKS:
        raise ConfigError(f"privleak_attack must be one of {ATTACKS}, got {privleak_attack!r}.")
    if not holdout_ids:
        raise ConfigError("Membership inference needs holdout facts (never trained on): build the benchmark with "
                          "n_holdout ≥ 1.")
    sf = forget_stats if forget_stats is not None else token_stats(model, bench.tensors(forget_ids))
    sh = token_stats(model, bench.tensors(holdout_ids))
    gf = gradnorm_scores(model, bench.tensors(forget_ids)) if gradnorm else None
    gh = gradnorm_scores(model, bench.tensors(holdout_ids)) if gradnorm else None
    ref_f = reference.nll_forget if reference is not None else None
    ref_h = reference.nll_holdout if reference is not None else None
    f = attack_scores(sf, answer_texts(bench, forget_ids), k, ref_f, gf)
    h = attack_scores(sh, answer_texts(bench, holdout_ids), k, ref_h, gh)
    out = {}
    for a in f:
        if ci:
            value, low, high = auc_ci(f[a], h[a])
            out[f"mia_{a}_auc"], out[f"mia_{a}_auc_low"], out[f"mia_{a}_auc_high"] = value, low, high
        else:
            out[f"mia_{a}_auc"] = auc(f[a], h[a])
    if reference is not None and f"mia_{privleak_attack}_auc" in out:
        out["privleak"] = privleak(out[f"mia_{privleak_attack}_auc"], reference.aucs[privleak_attack])
    out["extraction_strength"] = float(extraction_strength(sf).mean())
    out["exact_memorization"] = float(exact_memorization(sf).mean())
    return out


def privleak(auc_model: float, auc_oracle: float) -> float:
    """(AUC_model − AUC_oracle) / AUC_oracle (MUSE): 0 = leaks like the retrained model."""
    return (auc_model - auc_oracle) / max(auc_oracle, 1e-12)


__all__ = ["ATTACKS", "TokenStats", "token_stats", "attack_scores", "auc", "auc_ci", "privleak", "min_k_score",
           "gradnorm_scores", "extraction_strength", "exact_memorization", "OracleReference", "oracle_reference",
           "privacy_metrics"]
