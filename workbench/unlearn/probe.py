"""``UnlearnProbe``: forget / retain metrics logged live while a run unlearns.

Every ``every`` steps: ``forget_prob`` and ``retain_prob`` (per-token answer probability), the forget
truth score, ``forget_quality`` against the oracle when one is given (its truth ratios are computed once,
at attach time), ``general_prob`` on held-out text when given, and optionally ROUGE-L (greedy decoding,
slower). The view plots these columns as forget-vs-retain curves.
"""

from __future__ import annotations

import numpy as np
import param

from ..probes import PROBES, Probe
from .evals import answer_prob, forget_quality, general_prob, rouge_recall, truth_ratio
from .facts import FactsBenchmark


@PROBES.register("unlearn", help="forget/retain answer probability, truth ratio, forget quality")
class UnlearnProbe(Probe):
    """Measures how much of the forget set is gone and how much of the retain set is kept."""

    every = param.Integer(default=5, bounds=(1, None), doc="Measure every this many steps.")
    forget_fraction = param.Number(default=0.10, bounds=(0, 1), doc="Which forget split of the benchmark.")
    retain_limit = param.Integer(default=32, bounds=(1, None), doc="Retain facts evaluated (the first ones).")
    rouge = param.Boolean(default=False, doc="Also ROUGE-L of greedy answers (slower).")

    def __init__(self, bench: FactsBenchmark, oracle=None, general=None, **params):
        super().__init__(**params)
        self.bench, self.oracle, self.general = bench, oracle, general
        self.forget_ids = bench.forget_ids(self.forget_fraction)
        self.retain_ids = bench.retain_ids(self.forget_fraction)[: self.retain_limit]
        self.oracle_ratios = None

    def setup(self, run) -> None:
        if self.oracle is not None and self.oracle_ratios is None:
            self.oracle_ratios = truth_ratio(self.oracle, self.bench, self.forget_ids)

    def measure(self, run) -> dict:
        m = run.model
        tr = truth_ratio(m, self.bench, self.forget_ids)
        out = {"forget_prob": float(answer_prob(m, self.bench, self.forget_ids).mean()),
               "retain_prob": float(answer_prob(m, self.bench, self.retain_ids).mean()),
               "forget_truth": float(np.minimum(tr, 1 / tr).mean())}
        if self.oracle_ratios is not None:
            out["forget_quality"] = forget_quality(tr, oracle=self.oracle_ratios)
        if self.general is not None:
            out["general_prob"] = general_prob(m, self.general, limit=2)
        if self.rouge:
            out["forget_rouge"] = float(rouge_recall(m, self.bench, self.forget_ids).mean())
            out["retain_rouge"] = float(rouge_recall(m, self.bench, self.retain_ids).mean())
        return out
