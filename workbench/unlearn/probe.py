"""``UnlearnProbe``: forget / retain / privacy metrics logged live while a run unlearns.

Every ``every`` steps: ``forget_prob`` and ``retain_prob`` (per-token answer probability), the forget
truth score, ``forget_quality`` against the oracle when one is given (its truth ratios are computed once,
at set-up), ``general_prob`` on held-out text when given, optionally ROUGE-L (greedy decoding, slower),
and — with ``privacy`` (default on) — the membership-inference AUCs forget-vs-holdout
(``mia_loss_auc``, ``mia_zlib_auc``, ``mia_min_k_auc``, ``mia_min_k_plus_plus_auc``, with an oracle
``mia_reference_auc`` and ``privleak``; ``mia_gradnorm_auc`` with ``gradnorm``), ``extraction_strength``
and ``exact_memorization`` (see :mod:`.privacy`). The forget answers get one teacher-forced pass that
serves ``forget_prob`` and every privacy score; the holdout answers one more. Views plot these scalar
columns as they come.

One measurement costs about as much as 6–9 unlearning steps (gpt2-1m, default benchmark: ~200 answer
sequences through the model), so the default ``every=50`` keeps the average cost of a step within 15 %
(measured in ``benchmarks/bench_unlearn.py``); set ``every`` lower for denser curves at that price.
"""

from __future__ import annotations

import numpy as np
import param

from ..probes import PROBES, Probe
from .evals import forget_quality, general_prob, rouge_recall, truth_ratio_of
from .facts import FactsBenchmark
from .privacy import oracle_reference, privacy_metrics, token_stats


@PROBES.register("unlearn", help="forget/retain answer probability, truth ratio, forget quality, MIA AUCs, privleak")
class UnlearnProbe(Probe):
    """Measures how much of the forget set is gone, how much of the retain set is kept, and what an
    attacker can still tell."""

    every = param.Integer(default=50, bounds=(1, None), doc="Measure every this many steps.")
    forget_fraction = param.Number(default=0.10, bounds=(0, 1), doc="Which forget split of the benchmark.")
    retain_limit = param.Integer(default=16, bounds=(1, None), doc="Retain facts evaluated (the first ones).")
    general_batches = param.Integer(default=1, bounds=(1, None), doc="Batches of held-out general text (32 blocks each).")
    rouge = param.Boolean(default=False, doc="Also ROUGE-L of greedy answers (slower).")
    privacy = param.Boolean(default=True, doc="MIA AUCs (forget vs holdout), privleak, extraction strength, exact memorization.")
    gradnorm = param.Boolean(default=False, doc="Also the GradNorm attack (one backward per answer: slow).")
    mia_k = param.Number(default=0.4, bounds=(0, 1), inclusive_bounds=(False, True), doc="Min-K % fraction k.")

    def __init__(self, bench: FactsBenchmark, oracle=None, general=None, **params):
        super().__init__(**params)
        self.bench, self.oracle, self.general = bench, oracle, general
        self.forget_ids = bench.forget_ids(self.forget_fraction)
        self.retain_ids = bench.retain_ids(self.forget_fraction)[: self.retain_limit]
        self.holdout_ids = bench.holdout_ids()
        self.oracle_ratios = None
        self.oracle_reference = None
        self._tensors = {"forget": bench.tensors(self.forget_ids), "retain": bench.tensors(self.retain_ids),
                         "paraphrase": bench.tensors(self.forget_ids, "paraphrase"),
                         "perturbed": bench.tensors(self.forget_ids, "perturbed")}

    def setup(self, run) -> None:
        if self.oracle is not None and self.oracle_ratios is None:
            self.oracle_ratios = self._truth_ratio(self.oracle)
        if self.oracle is not None and self.privacy and self.holdout_ids and self.oracle_reference is None:
            self.oracle_reference = oracle_reference(self.oracle, self.bench, self.forget_ids, self.holdout_ids,
                                                     k=self.mia_k, gradnorm=self.gradnorm)

    def _truth_ratio(self, model) -> np.ndarray:
        t = self._tensors
        return truth_ratio_of(model, t["paraphrase"], t["perturbed"], len(self.forget_ids))

    def measure(self, run) -> dict:
        m = run.model
        tr = self._truth_ratio(m)
        sf = token_stats(m, self._tensors["forget"])
        out = {"forget_prob": float(np.exp(-sf.nll).mean()),
               "retain_prob": float(np.exp(-token_stats(m, self._tensors["retain"]).nll).mean()),
               "forget_truth": float(np.minimum(tr, 1 / tr).mean())}
        if self.oracle_ratios is not None:
            out["forget_quality"] = forget_quality(tr, oracle=self.oracle_ratios)
        if self.general is not None:
            out["general_prob"] = general_prob(m, self.general, limit=self.general_batches)
        if self.rouge:
            out["forget_rouge"] = float(rouge_recall(m, self.bench, self.forget_ids).mean())
            out["retain_rouge"] = float(rouge_recall(m, self.bench, self.retain_ids).mean())
        if self.privacy and self.holdout_ids:
            out.update(privacy_metrics(m, self.bench, self.forget_ids, self.holdout_ids, self.oracle_reference,
                                       k=self.mia_k, gradnorm=self.gradnorm, forget_stats=sf, ci=False))
        return out
