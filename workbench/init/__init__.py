"""Initialization recipes: one registry of named, parameterized recipes shared by every lab.

======================  =====================================================================
recipe                  what it does to each selected ``[out, in]`` matrix ``W``
======================  =====================================================================
``scale``               ``W ← factor · W``
``low_rank``            SVD-truncate to rank ``r``, rescale to the same ‖W‖_F
``aligned``             rank-``r`` init from the task (−∇L at init or E[y xᵀ]), same ‖W‖_F;
                        ``alignment`` ∈ [0, 1] dials from random low-rank to task-aligned
``orthogonal``          Haar (semi-)orthogonal × ``gain`` (or at the old norm)
``gaussian``            i.i.d. N(0, gain²/fan_in)
======================  =====================================================================

Every recipe also has ``include``/``exclude`` (regexes on canonical matrix names from
:mod:`workbench.matrices`), ``embeddings`` and ``seed`` (its own generator: the global RNG is untouched).
New-token embeddings (vocabulary expansion) live in :mod:`workbench.init.vocab`.

>>> from workbench.init import RECIPES
>>> RECIPES.names()
['scale', 'low_rank', 'aligned', 'orthogonal', 'gaussian']
>>> from workbench.models import rnn
>>> from workbench.init import apply, preview
>>> net = rnn(n_hidden=30)
>>> apply(net, "low_rank", rank=3, include="weight_rec")
['weight_rec']
>>> int(preview(net, "scale", factor=1.0, include="weight_rec").numerical_rank_after.item())
3
"""

from __future__ import annotations

from . import scale, low_rank, aligned, orthogonal, gaussian  # noqa: F401  (registration, in table order)
from .aligned import Aligned, cross_covariance
from .apply import apply, plan, resolve, target_parameters
from .base import InitRecipe
from .gaussian import Gaussian
from .low_rank import LowRank
from .orthogonal import Orthogonal
from .preview import preview
from .registry import RECIPES, register
from .scale import Scale

__all__ = ["RECIPES", "register", "InitRecipe", "apply", "plan", "preview", "resolve", "target_parameters",
           "cross_covariance", "Scale", "LowRank", "Aligned", "Orthogonal", "Gaussian"]
