"""Unlearning lab: built-in fictitious-facts benchmark, target/oracle pipeline, methods, evaluation,
membership inference / privacy leakage / memorization, relearning attacks and a view of what unlearning does to the weights.

>>> from workbench.unlearn import METHODS
>>> sorted(METHODS.names())
['dpo', 'flat', 'ga', 'graddiff', 'idkdpo', 'npo', 'rmu', 'simnpo', 'wga']

See ``docs/unlearning.md`` and ``notebooks/unlearning.py``.
"""

from .evals import answer_prob, evaluate, forget_quality, greedy_answers, kl_to_oracle, truth_ratio
from .facts import FORGET_FRACTIONS, Fact, FactsBenchmark, general_text
from .methods import METHODS, Method, Terms, WithRetain
from .pipeline import Prepared, prepare
from .privacy import ATTACKS, auc, auc_ci, oracle_reference, privacy_metrics, privleak
from .probe import UnlearnProbe
from .relearn import Relearn, relearn_attack
from .rouge import rouge_l
from .sam import plain_backward, sam_backward
from .stage import Unlearn
from .wagle import WeightMask, attribution_scores, top_fraction_mask
from .weights import moved_most, update_summary

__all__ = ["Unlearn", "METHODS", "Method", "WithRetain", "Terms", "ATTACKS", "auc", "auc_ci", "oracle_reference",
           "privacy_metrics", "privleak", "FactsBenchmark", "Fact", "FORGET_FRACTIONS", "general_text",
           "prepare", "Prepared", "evaluate", "answer_prob", "truth_ratio", "forget_quality", "kl_to_oracle",
           "greedy_answers", "UnlearnProbe", "Relearn", "relearn_attack", "rouge_l", "sam_backward", "plain_backward",
           "WeightMask", "attribution_scores", "top_fraction_mask", "update_summary", "moved_most"]
