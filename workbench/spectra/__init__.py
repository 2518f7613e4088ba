"""Spectral engine: singular spectra, ranks, power-law tails and intruder dimensions of weight matrices.

Stable public API (notebooks and other packages import these names):

* :func:`effective_rank`, :func:`stable_rank`, :func:`numerical_rank`, :func:`power_law_alpha`,
  :func:`singular_values` — one matrix;
* :func:`model_spectra` — every matrix of a model as an ``xarray.Dataset`` (batched SVD per shape);
* :func:`fit_power_law`, :func:`mp_fit`, :func:`norm_metrics`, :func:`heavytail_metrics`, :func:`permuted`,
  :func:`rand_distance`, :func:`alpha_warning` — WeightWatcher's heavy-tailed family (α, log norms, MP bulk,
  correlation traps), also computed by ``model_spectra`` and ``SpectraProbe``;
* :func:`top_singular_values` — the top-k values of many matrices fast (Gram matrix + Chebyshev filter; what
  ``model_spectra(top_k=...)`` uses);
* :func:`intruder_dimensions`, :func:`find_intruders`, :func:`intruder_component`, :class:`BaseVectors` —
  intruder dimensions (Shuttleworth et al. 2024);
* :func:`what_moved` / :class:`MovedProbe` — W against W0 per matrix (norms, ranks of W and ΔW, intruders,
  principal angles; the names of :mod:`workbench.vocabulary`): the one engine every lab calls;
* :func:`compare` / :func:`compare_matrices`, :func:`principal_angles` — two checkpoints (``what_moved`` with everything);
* :class:`SpectraProbe` — live tracking during a :class:`~workbench.Run`.

All matrices come from :func:`workbench.matrices.weight_matrices` (canonical names, ``[out, in]``, GPT-2
Conv1D transposed, PEFT effective weights). See ``docs/spectra.md``.

>>> import torch
>>> from workbench.spectra import effective_rank, stable_rank
>>> round(effective_rank(torch.eye(3)), 6), stable_rank(torch.eye(3))
(3.0, 3.0)
"""

from .core import (as_matrix, effective_rank, model_spectra, numerical_rank,
                   power_law_alpha, singular_values, spectra_table, stable_rank)
from .topk import top_singular_values
from .heavytail import (MPFit, PowerLawFit, alpha_warning, fit_power_law, heavytail_metrics, mp_fit, norm_metrics,
                        permuted, rand_distance)
from .intruders import (BaseVectors, Intruders, find_intruders, intruder_component, intruder_dimensions,
                        intruder_profile, left_singular_vectors, max_abs_cos)
from .moved import MovedProbe, what_moved
from .compare import compare, compare_matrices, principal_angles
from .probe import SpectraProbe

__all__ = ["effective_rank", "stable_rank", "numerical_rank", "power_law_alpha", "singular_values", "fit_power_law",
           "PowerLawFit", "as_matrix", "model_spectra", "top_singular_values", "spectra_table", "intruder_dimensions", "find_intruders",
           "intruder_component", "intruder_profile", "Intruders", "BaseVectors", "left_singular_vectors", "max_abs_cos",
           "compare", "compare_matrices", "principal_angles", "SpectraProbe", "what_moved", "MovedProbe", "MPFit", "mp_fit",
           "norm_metrics", "heavytail_metrics", "permuted", "rand_distance", "alpha_warning"]
