"""One vocabulary: the record variable names every lab uses for "what moved since W0", and old names mapped.

W is a weight matrix now (``[out, in]``, :mod:`workbench.matrices` conventions), W0 the same matrix in the
reference snapshot (the run's ``reference``: the init, the pre-trained base, the model before unlearning),
ΔW = W − W0, σ singular values (descending). Every name below means the same thing in every lab, record,
view and notebook; :func:`workbench.spectra.moved.what_moved` computes all of them (one engine).

===============================  ==============================================================  ==================  ============
name                             meaning                                                         dims                unit
===============================  ==============================================================  ==================  ============
``delta_norm``                   ‖W − W0‖_F                                                      matrix              weight units
``delta_rel_norm``               ‖W − W0‖_F / ‖W0‖_F (NaN if W0 = 0)                             matrix              1
``distance_from_init``           √Σ_matrices ‖W − W0‖²_F                                         (scalar)            weight units
``relative_distance_from_init``  distance_from_init / √Σ_matrices ‖W0‖²_F                        (scalar)            1
``effective_rank``               Roy–Vetterli effective rank of W: exp H(σ/Σσ) (0 for W = 0)     matrix              dimensions
``stable_rank``                  ‖W‖²_F / ‖W‖²_2 of W (0 for W = 0)                              matrix              dimensions
``effective_rank_init``          effective rank of W0                                            matrix              dimensions
``stable_rank_init``             stable rank of W0                                               matrix              dimensions
``delta_effective_rank``         effective rank of ΔW (0 while ΔW = 0)                           matrix              dimensions
``delta_stable_rank``            stable rank of ΔW (0 while ΔW = 0)                              matrix              dimensions
``delta_numerical_rank``         #σ(ΔW) > σ_max · max(m, n) · eps (numpy's matrix_rank)          matrix              dimensions
``delta_spectral_norm``          ‖ΔW‖_2 = σ_max(ΔW)                                              matrix              weight units
``intruders``                    intruder dimensions: top-k left singular vectors of W whose     matrix              count
                                 max |cos| with every left singular vector of W0 is < eps
``intruders_total``              Σ_matrices intruders                                            (scalar)            count
``max_cos``                      that max |cos| per top-k vector of W                            matrix × rank       1
``principal_angles``             angles between the top-k left singular subspaces of W0 and W    matrix × rank       rad
``subspace_overlap``             mean cos² of the principal angles (1 = same subspace)           matrix              1
``singular_values``              σ(W)                                                            matrix × index      weight units
``singular_values_init``         σ(W0)                                                           matrix × index      weight units
``singular_value_shift``         σ_i(W) − σ_i(W0)                                                matrix × index      weight units
``delta_singular_values``        σ(ΔW)                                                           matrix × index      weight units
===============================  ==============================================================  ==================  ============

Conventions for the rest: a quantity of W0 ends in ``_init``; an init preview
(:func:`workbench.init.preview`) reports the matrix before and after a recipe as ``<name>_before`` /
``<name>_after`` (``singular_values``, ``effective_rank``, ``numerical_rank``, ``frobenius_norm``);
``matrix`` is the canonical parameter name, ``rank`` the position among the top-k singular vectors,
``index`` the position of a singular value.

Records written before the vocabulary was unified used other names; :data:`OLD_NAMES` maps them and
:func:`upgrade` (called by :func:`workbench.record.open_record`) renames them on load.

>>> import xarray as xr
>>> old = xr.Dataset({"relative_weight_change": ("matrix", [0.1]), "erank_dw": ("matrix", [2.0])}, coords={"matrix": ["w"]})
>>> sorted(upgrade(old).data_vars)
['delta_effective_rank', 'delta_rel_norm']
"""

from __future__ import annotations

import xarray as xr

#: The names of the table above: name → (meaning, dims, unit). Views and the engine label plots with it.
VOCABULARY: dict[str, tuple[str, tuple[str, ...], str]] = {
    "delta_norm": ("‖W − W0‖_F", ("matrix",), "weight units"),
    "delta_rel_norm": ("‖W − W0‖_F / ‖W0‖_F", ("matrix",), "1"),
    "distance_from_init": ("√Σ‖W − W0‖²_F", (), "weight units"),
    "relative_distance_from_init": ("√Σ‖W − W0‖²_F / √Σ‖W0‖²_F", (), "1"),
    "effective_rank": ("effective rank of W", ("matrix",), "dimensions"),
    "stable_rank": ("stable rank ‖W‖²_F/‖W‖²_2", ("matrix",), "dimensions"),
    "effective_rank_init": ("effective rank of W0", ("matrix",), "dimensions"),
    "stable_rank_init": ("stable rank of W0", ("matrix",), "dimensions"),
    "delta_effective_rank": ("effective rank of ΔW = W − W0", ("matrix",), "dimensions"),
    "delta_stable_rank": ("stable rank of ΔW", ("matrix",), "dimensions"),
    "delta_numerical_rank": ("numerical rank of ΔW", ("matrix",), "dimensions"),
    "delta_spectral_norm": ("‖ΔW‖_2", ("matrix",), "weight units"),
    "intruders": ("intruder dimensions of W vs W0", ("matrix",), "count"),
    "intruders_total": ("Σ intruder dimensions", (), "count"),
    "max_cos": ("max |cos| of a top-k vector of W with W0's vectors", ("matrix", "rank"), "1"),
    "principal_angles": ("principal angles, top-k subspaces of W0 and W", ("matrix", "rank"), "rad"),
    "subspace_overlap": ("mean cos² of the principal angles", ("matrix",), "1"),
    "singular_values": ("σ(W)", ("matrix", "index"), "weight units"),
    "singular_values_init": ("σ(W0)", ("matrix", "index"), "weight units"),
    "singular_value_shift": ("σ(W) − σ(W0)", ("matrix", "index"), "weight units"),
    "delta_singular_values": ("σ(ΔW)", ("matrix", "index"), "weight units"),
}

#: Names used before the vocabulary was unified → the name now (what :func:`upgrade` renames).
OLD_NAMES: dict[str, str] = {
    # ‖ΔW‖ and ‖ΔW‖/‖W0‖
    "delta_frobenius_norm": "delta_norm",                # spectra.compare
    "relative_change": "delta_rel_norm",                 # unlearn.update_summary
    "relative_weight_change": "delta_rel_norm",          # regime.WeightChange
    "weight_change": "delta_rel_norm",                   # regime.rich_lazy_trial / sweep results
    # ranks of W, W0 and ΔW
    "erank_w": "effective_rank",                         # regime.EffectiveRank
    "erank_dw": "delta_effective_rank",                  # regime.EffectiveRank, rich_lazy_trial
    "erank_init": "effective_rank_init",                 # rich_lazy_trial
    "effective_rank_tuned": "effective_rank",            # spectra.compare
    "effective_rank_base": "effective_rank_init",        # spectra.compare
    "singular_values_tuned": "singular_values",          # spectra.compare
    "singular_values_base": "singular_values_init",      # spectra.compare
    # init preview (before / after a recipe)
    "sigma_before": "singular_values_before", "sigma_after": "singular_values_after",
    "erank_before": "effective_rank_before", "erank_after": "effective_rank_after",
    "rank_before": "numerical_rank_before", "rank_after": "numerical_rank_after",
    "frobenius_before": "frobenius_norm_before", "frobenius_after": "frobenius_norm_after",
}


def upgrade(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with every variable named in :data:`OLD_NAMES` renamed to its current name.

    An old name is left alone when the dataset already holds the new one (nothing is overwritten).
    Returns ``ds`` itself when nothing needs renaming.
    """
    renames = {old: new for old, new in OLD_NAMES.items() if old in ds.variables and new not in ds.variables}
    news = list(renames.values())
    renames = {old: new for old, new in renames.items() if news.count(new) == 1}  # two old names for one: keep both
    return ds.rename(renames) if renames else ds
