"""Membership inference, privleak, extraction strength and exact memorization (#15.1–2), each on a planted
case with a known answer: a model that memorized the forget set, and an oracle that never saw it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

from workbench import Run, models
from workbench.unlearn import FactsBenchmark, Unlearn, UnlearnProbe, evaluate
from workbench.unlearn.privacy import (attack_scores, auc, auc_ci, exact_memorization, extraction_strength,
                                       gradnorm_scores, oracle_reference, privacy_metrics, privleak, token_stats)

ATTACKS_NO_REF = ("loss", "zlib", "min_k", "min_k_plus_plus", "gradnorm")


@pytest.fixture(scope="module")
def bench():
    # forget10 = 4 entities (16 facts); 12 holdout entities (48 facts) keep the oracle's AUC interval honest-sized
    return FactsBenchmark(n_entities=40, n_holdout=12, seed=0)


def _run(base, bench, which, steps):
    return Run(copy.deepcopy(base), bench.dataset(which, 0.1), max_steps=steps, lr=1e-2, batch_size=16, eval_every=0,
               seed=0, log_every=steps)


@pytest.fixture(scope="module")
def models3(bench):
    """(memorized: 100 steps on the forget facts — it reproduces them; half: the same run after 40 steps —
    partly; oracle: 60 steps on the retain facts only — it never saw forget or holdout)."""
    base = models.build("gpt2-1m", n_layer=2, n_embd=64, n_head=2, seed=0)
    run = _run(base, bench, "forget", 100)
    run.run(40, progress=False)
    half = copy.deepcopy(run.model).eval()
    run.run(progress=False)
    oracle = _run(base, bench, "retain", 60).run(progress=False).model
    return run.model.eval(), half, oracle.eval()


def test_auc_is_mann_whitney_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 30).astype(float), rng.integers(1, 6, 25).astype(float)  # many ties
    u = mannwhitneyu(-a, -b, alternative="two-sided").statistic  # members score lower: U of the negated scores
    assert auc(a, b) == pytest.approx(u / (30 * 25))
    assert auc(np.zeros(3), np.ones(4)) == 1.0 and auc(np.ones(3), np.zeros(4)) == 0.0
    assert auc(np.ones(3), np.ones(4)) == 0.5
    value, lo, hi = auc_ci(a, b)
    assert value == pytest.approx(auc(a, b)) and lo < value < hi
    assert privleak(0.5, 0.5) == 0.0 and privleak(1.0, 0.5) == pytest.approx(1.0)


@pytest.mark.slow  # shares a ~25 s module fixture (three small trainings)
def test_min_k_at_100_percent_is_loss_and_min_k_plus_plus_is_the_standardized_log_prob(bench, models3):
    memorized, half, _ = models3
    ids = bench.forget_ids(0.1)
    texts = [bench.facts[i].answer for i in ids]
    stats = token_stats(half, bench.tensors(ids))
    s = attack_scores(stats, texts, k=1.0)
    np.testing.assert_allclose(s["min_k"], s["loss"], rtol=1e-12)
    assert not np.allclose(attack_scores(stats, texts, k=0.2)["min_k"], s["loss"])
    # z of one token, from the model's logits directly (float64)
    t = bench.tensors(ids[:1])
    with torch.no_grad():
        logits = half(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits[0, :-1].double()
    pos = int(np.flatnonzero(stats.mask[0])[0])
    logq = torch.log_softmax(logits[pos], -1)
    tok = int(t["labels"][0, pos + 1])
    mu = (logq.exp() * logq).sum()
    sd = ((logq.exp() * logq**2).sum() - mu**2).sqrt()
    assert stats.z[0, pos] == pytest.approx(float((logq[tok] - mu) / sd), rel=1e-4)


@pytest.mark.slow  # shares a ~25 s module fixture (three small trainings)
def test_memorized_forget_set_is_detected_and_the_oracle_is_not(bench, models3):
    memorized, _, oracle = models3
    f, h = bench.forget_ids(0.1), bench.holdout_ids()
    ref = oracle_reference(oracle, bench, f, h)
    mem = privacy_metrics(memorized, bench, f, h, ref)
    for a in ATTACKS_NO_REF + ("reference",):
        assert mem[f"mia_{a}_auc"] >= 0.9, (a, mem[f"mia_{a}_auc"])
    assert mem["exact_memorization"] > 0.9 and mem["extraction_strength"] > 0.8
    orc = privacy_metrics(oracle, bench, f, h, ref)
    for a in ATTACKS_NO_REF:
        assert orc[f"mia_{a}_auc_low"] <= 0.5 <= orc[f"mia_{a}_auc_high"], (a, orc[f"mia_{a}_auc"])
    assert orc["mia_reference_auc"] == 0.5  # the oracle against itself: every score 0, all tied
    assert orc["privleak"] == 0.0 and mem["privleak"] > 0.5
    assert orc["exact_memorization"] < 0.7 and orc["extraction_strength"] < mem["extraction_strength"]


@pytest.mark.slow  # shares a ~25 s module fixture (three small trainings)
def test_evaluate_reports_privacy_and_privleak_of_the_oracle_is_zero(bench, models3):
    memorized, _, oracle = models3
    ds = evaluate(oracle, bench, 0.1, oracle=oracle, retain_limit=4, rouge=False, gradnorm=False)
    assert float(ds.privleak) == 0.0 and ds.attrs["n_holdout"] == 48
    assert {"mia_loss_auc", "mia_zlib_auc", "mia_min_k_auc", "mia_min_k_plus_plus_auc", "mia_reference_auc",
            "extraction_strength", "exact_memorization"} <= set(ds.data_vars)
    assert "mia_gradnorm_auc" not in ds
    ds = evaluate(memorized, bench, 0.1, oracle=oracle, retain_limit=4, rouge=False)
    assert float(ds.privleak) > 0.5 and float(ds.mia_gradnorm_auc) >= 0.9


def _greedy_shortest_prefix(model, bench, t, row) -> int:
    """Shortest k such that greedy decoding after prompt + k answer tokens reproduces the rest (by generate)."""
    labels = t["labels"][row]
    pos = torch.nonzero(labels != -100).flatten()
    start, answer = int(pos[0]), labels[pos]
    n = len(answer)
    for k in range(n + 1):
        if k == n:
            return n
        ids = t["input_ids"][row, : start + k].unsqueeze(0)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n - k, do_sample=False,
                             pad_token_id=bench.tokenizer.pad_token_id, eos_token_id=bench.tokenizer.eos_token_id)
        if out[0, start + k :].tolist() == answer[k:].tolist():
            return k
    return n


@pytest.mark.slow  # shares a ~25 s module fixture (three small trainings)
def test_extraction_strength_is_the_shortest_reproducing_prefix(bench, models3):
    ids = bench.forget_ids(0.1)[:8]
    t = bench.tensors(ids)
    seen = set()
    for model in models3[:2]:
        stats = token_stats(model, t)
        es, em = extraction_strength(stats), exact_memorization(stats)
        for row in range(len(ids)):
            n = int(stats.mask[row].sum())
            k = _greedy_shortest_prefix(model, bench, t, row)
            assert es[row] == pytest.approx(1 - k / n), row
            seen.add("full" if k == 0 else "none" if k == n else "partial")
            assert em[row] == pytest.approx(stats.correct[row][stats.mask[row]].mean())
    assert {"full", "partial"} <= seen  # the planted models cover memorized and partly memorized answers


@pytest.mark.slow  # shares a ~25 s module fixture (three small trainings)
def test_gradnorm_leaves_grads_and_flags_alone(bench, models3):
    _, _, oracle = models3
    oracle.requires_grad_(False).zero_grad(set_to_none=True)  # (training left .grad behind)
    g = gradnorm_scores(oracle, bench.tensors(bench.forget_ids(0.1)[:3]))
    assert g.shape == (3,) and np.all(g > 0)
    assert not any(p.requires_grad for p in oracle.parameters()) and all(p.grad is None for p in oracle.parameters())


@pytest.mark.slow  # shares a ~25 s module fixture (three small trainings)
def test_probe_streams_privacy_during_unlearning(bench, models3):
    memorized, _, oracle = models3
    probe = UnlearnProbe(bench, oracle=oracle, every=2, retain_limit=4)
    st = Unlearn(copy.deepcopy(memorized), bench.split("forget"), method="ga", lr=1e-2, batch_size=8, max_steps=4,
                 probes=[probe])
    st.run(progress=False)
    rec = st.record
    for name in ("mia_loss_auc", "mia_zlib_auc", "mia_min_k_auc", "mia_min_k_plus_plus_auc", "mia_reference_auc",
                 "privleak", "extraction_strength", "exact_memorization", "forget_prob"):
        assert int(rec[name].notnull().sum()) == 3, name  # steps 0, 2, 4
    assert "mia_gradnorm_auc" not in rec  # off in the probe by default (one backward per answer)
    loss_auc = rec["mia_loss_auc"].dropna("step").values
    assert loss_auc[0] >= 0.9 and loss_auc[-1] < loss_auc[0]  # gradient ascent lowers the forget likelihood
