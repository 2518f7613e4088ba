"""Intruder mitigation: scale each matrix's intruder components by λ, then measure again.

Reference behaviour: PEFT's ``peft.tuners.lora.intruders.reduce_intruder_dimension`` — for every LoRA
layer, find the top-k singular vectors of the merged weight whose max |cos| with the base's left singular
vectors is below ε, and replace ``W`` by ``W + (λ − 1) · Σ_{j∈I} σ_j u_j v_jᵀ`` (λ = 0.75 by default).

Differences, on purpose:

* **Against the true W0.** PEFT compares with the base layer's *current* weight, which PiSSA / OLoRA /
  CorDA / LoRA-GA rewrote to ``W0 − s·B0A0``; here intruders are relative to the run's reference snapshot
  W0 (the pre-trained weights), as in the paper.
* **Never in place.** PEFT writes a new adapter re-factorized to rank r (an SVD truncation that can
  change more than the intruders). This module works on the *merged effective weights* of a **copy** of
  the model (:func:`~workbench.finetune.stage.merged`): the returned model is a plain model holding the
  mitigated weights; the run's model and adapters are untouched. The same code serves full fine-tuning.

>>> from workbench.finetune import FineTune
>>> ft = FineTune(base, "recipes", rank=1).run()                           # doctest: +SKIP
>>> ds = mitigation_sweep(ft, lams=[1.0, 0.75, 0.5, 0.0])                  # doctest: +SKIP
>>> ds[["intruders", "val_loss", "pretrain_loss"]]   # over `lam` (× `matrix`)  # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..data.base import to_device
from ..errors import ConfigError
from ..matrices import is_conv1d, owner_modules, weight_matrices
from ..snapshot import Snapshot
from .stage import merged


def _check(lam, k, eps):
    if not (isinstance(lam, (int, float)) and math.isfinite(lam)):
        raise ConfigError(f"lam (λ) must be a finite number (0 removes intruders, 1 keeps them), got {lam!r}.")
    if not (isinstance(k, int) and k >= 1):
        raise ConfigError(f"k must be a positive integer, got {k!r}.")
    if not 0 < eps <= 1:
        raise ConfigError(f"eps must be in (0, 1], got {eps!r}.")


@torch.no_grad()
def mitigate_weights(model: nn.Module, reference: Snapshot, names, lam: float = 0.75, k: int = 10,
                     eps: float = 0.5) -> dict[str, int]:
    """Scale the intruder components of ``names`` in a **plain** model by ``lam``, in place.

    Returns the intruder count per matrix found before scaling. ``model`` must hold its weights directly
    (a merged copy — see :func:`mitigate`); PEFT / LoRA-SB models are refused so nothing is corrupted.
    """
    from ..spectra import find_intruders, intruder_component

    _check(lam, k, eps)
    if hasattr(model, "peft_config") or any(hasattr(m, "workbench_effective_weight") for m in model.modules()):
        raise ConfigError("mitigate_weights edits weights in place and needs a plain model; call mitigate(run) "
                          "(it works on a merged copy) instead.")
    owners = owner_modules(model)
    current = weight_matrices(model, include=lambda n: n in set(names))
    counts = {}
    for name in names:
        w = current[name].float()  # [out, in]
        res = find_intruders(reference.get(name).to(w.device), w, k=k, eps=eps)
        counts[name] = res.count
        if res.count == 0:
            continue
        new = w + (lam - 1.0) * intruder_component(res)  # [out, in]
        param = dict(model.named_parameters())[name]
        param.copy_((new.T if is_conv1d(owners[name]) else new).to(param.dtype))
    return counts


@torch.no_grad()
def eval_losses(model: nn.Module, splits: dict, loss_fn, device, batch_size: int = 32, max_batches: int = 4) -> dict:
    """Mean loss on each split (eval mode, no grad), ``{label}_loss`` — the same numbers the run's EvalLoss logs."""
    was = model.training
    model.eval()
    out = {}
    try:
        for label, split in splits.items():
            total, count = 0.0, 0
            for batch in split.batches(batch_size, limit=max_batches):
                batch = to_device(batch, device)
                loss, _ = loss_fn(model, batch)
                n = len(next(iter(batch.values())))
                total, count = total + float(loss) * n, count + n
            out[f"{label}_loss"] = total / count if count else math.nan
    finally:
        model.train(was)
    return out


def mitigate(run, lam: float = 0.75, k: int | None = None, eps: float | None = None) -> tuple[nn.Module, xr.Dataset]:
    """Mitigated copy of a :class:`~workbench.finetune.FineTune`'s model, and its measurements.

    Returns ``(model, ds)``: ``model`` is a plain (merged) copy with each target matrix's intruder components
    scaled by ``lam``; ``ds`` has ``intruders_before``/``intruders_after`` over ``matrix`` and the held-out
    losses (``val_loss``, ``pretrain_loss`` …) of the mitigated model as scalars. The run is not modified.
    """
    from ..spectra import intruder_dimensions

    k = run.intruder_k if k is None else k
    eps = run.intruder_eps if eps is None else eps
    _check(lam, k, eps)
    names = run.target_matrices
    model = merged(run)  # a deep copy, adapters merged
    before = mitigate_weights(model, run.reference, names, lam, k, eps)
    after = intruder_dimensions(run.reference, weight_matrices(model, include=lambda n: n in set(names)), k=k, eps=eps)
    losses = eval_losses(model, run.evals, run.data.loss, run.torch_device, run.batch_size, run.eval_batches)
    ds = xr.Dataset({"intruders_before": ("matrix", np.array([before[n] for n in names])),
                     "intruders_after": ("matrix", after.sel(matrix=names).values)},
                    coords={"matrix": names}, attrs={"lam": float(lam), "k": int(k), "eps": float(eps),
                                                     "step": run.global_step, "run_id": run.run_id})
    for key, value in losses.items():
        ds[key] = value
    return model, ds


def mitigation_sweep(run, lams=(1.0, 0.75, 0.5, 0.25, 0.0), k: int | None = None, eps: float | None = None,
                     log: bool = True) -> xr.Dataset:
    """:func:`mitigate` for each λ, stacked over ``lam``: the task-loss vs forgetting trade-off.

    With ``log=True`` each λ's totals are also appended to the run's history at its current step as
    ``mitigated_intruders``, ``mitigated_val_loss``, ``mitigated_pretrain_loss`` (columns a view can poll).
    """
    parts = []
    for lam in lams:
        _, ds = mitigate(run, lam, k, eps)
        parts.append(ds.expand_dims(lam=[float(lam)]))
        if log:
            row = {"mitigation_lambda": float(lam), "mitigated_intruders": float(ds.intruders_after.sum())}
            row.update({f"mitigated_{n}": float(ds[n]) for n in ds.data_vars if n.endswith("_loss")})
            run.history.log(run.global_step, **row)
    out = xr.concat(parts, dim="lam")
    out["intruders"] = out.intruders_after.sum("matrix")
    return out
