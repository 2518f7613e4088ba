"""Effective rank (Roy & Vetterli) of each selected weight matrix W and of its change ΔW = W − W0."""

from __future__ import annotations

from ..probes import PROBES
from ..spectra.moved import MovedProbe


@PROBES.register("effective_rank", help="effective rank of W and of ΔW per matrix")
class EffectiveRank(MovedProbe):
    """``effective_rank`` and ``delta_effective_rank`` over ``matrix`` (ΔW against ``run.reference``; 0 before any change).

    The "what moved" probe (:class:`workbench.spectra.moved.MovedProbe`) with those two variables. A
    :class:`~workbench.spectra.SpectraProbe` logs ``effective_rank`` too: attach one or the other (or give
    both the same matrices), since a later value at the same step replaces the earlier one.
    """

    def __init__(self, **params):
        params.setdefault("variables", ["effective_rank", "delta_effective_rank"])
        super().__init__(**params)
