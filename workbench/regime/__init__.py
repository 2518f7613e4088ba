"""Regime diagnostics: is learning rich or lazy? Probes, a trial function, and sweeps on Dask.

================================  ===================================================================
probe (``PROBES`` name)           records
================================  ===================================================================
``WeightChange``                  ``delta_rel_norm[matrix]``, ``distance_from_init``,
                                  ``relative_distance_from_init``; :func:`log_fit` over a record
``KernelAlignment``               ``kernel_alignment`` (K_0 vs K_t), ``kernel_task_alignment`` (yyᵀ),
                                  ``kernel_norm_ratio`` — empirical tangent kernel via torch.func
``RepresentationAlignment``       ``rep_alignment`` (uncentered), ``rep_cka`` (centered)
``EffectiveRank``                 ``effective_rank[matrix]``, ``delta_effective_rank[matrix]``
``Sharpness``                     ``sharpness`` (λ_max, HVP power iteration), ``hessian_trace`` (Hutchinson)
``SplitAccuracy``                 ``<split>_accuracy``, ``<split>_loss``, ``weight_norm`` (grokking)
================================  ===================================================================

:func:`sweep` maps :func:`rich_lazy_trial` (or any picklable ``fn(config) -> {metric: float}``) over a
grid and returns one ``xarray.Dataset`` with a dim per grid parameter (serial, local processes or Dask).
:class:`InitLab` holds the init dials for the views; :mod:`~workbench.regime.grokking` has a tiny
transformer on modular arithmetic (``grokking_run``) with the init-scale and weight-decay dials.

>>> from workbench.regime import kernel_alignment, linear_cka   # doctest: +SKIP
"""

from __future__ import annotations

from ..data import cognitive  # noqa: F401  (registers two_afc and delayed_match)
from .kernel import KernelAlignment, jacobian, kernel_alignment, tangent_kernel, task_alignment, task_targets
from .rank import EffectiveRank
from .representation import RepresentationAlignment, gram, hidden_representation, linear_cka, representation_alignment
from .sharpness import Sharpness, hutchinson_trace, hvp, loss_function, top_eigenvalue
from .sweep import expand_grid, local_cluster, sweep
from .trial import DEFAULTS as TRIAL_DEFAULTS, build_trial, rich_lazy_trial
from .grokking import SplitAccuracy, TokenClassifier, grokking_run, tiny_transformer, transition_steps
from .lab import InitLab, grid_summary
from .weight_change import WeightChange, log_fit

__all__ = ["local_cluster", "WeightChange", "log_fit", "KernelAlignment", "jacobian", "tangent_kernel", "kernel_alignment", "task_alignment",
           "task_targets", "RepresentationAlignment", "representation_alignment", "linear_cka", "gram",
           "hidden_representation", "EffectiveRank", "Sharpness", "hvp", "top_eigenvalue", "hutchinson_trace",
           "loss_function", "sweep", "expand_grid", "InitLab", "grid_summary", "SplitAccuracy", "TokenClassifier", "grokking_run", "tiny_transformer",
           "transition_steps", "rich_lazy_trial", "build_trial", "TRIAL_DEFAULTS"]
