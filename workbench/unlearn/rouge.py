"""ROUGE-L from the longest common subsequence of words (Lin, 2004), as TOFU reports it (recall).

Words are lower-cased alphanumeric runs, so punctuation and case do not count.

>>> r = rouge_l("Orvan was born in Thalmora.", "orvan was born in Tel")
>>> round(r["recall"], 3), round(r["precision"], 3)
(0.8, 0.8)
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (O(len(a)·len(b)) dynamic programme, one row)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(reference: str, prediction: str) -> dict[str, float]:
    """``{"recall", "precision", "f"}`` of ROUGE-L between a reference and a prediction."""
    ref, pred = words(reference), words(prediction)
    lcs = lcs_length(ref, pred)
    recall = lcs / len(ref) if ref else 0.0
    precision = lcs / len(pred) if pred else 0.0
    f = 2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0
    return {"recall": recall, "precision": precision, "f": f}
