"""Resolve a recipe, plan the new matrices, and write them into a model — all-or-nothing.

>>> import torch
>>> from workbench.init import apply
>>> m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> norm = m[0].weight.norm().item()
>>> changed = apply(m, "low_rank", rank=2, include=r"^0\\.")
>>> int(torch.linalg.matrix_rank(m[0].weight)), round(m[0].weight.norm().item() / norm, 4)
(2, 1.0)
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..matrices import canonical_name, is_conv1d, owner_modules
from .base import InitRecipe
from .registry import RECIPES


def resolve(recipe: str | InitRecipe, **params) -> InitRecipe:
    """An :class:`InitRecipe` instance from a name plus parameters (or an instance, updated with ``params``)."""
    if isinstance(recipe, InitRecipe):
        if params:
            recipe = recipe.copy()
            _set(recipe, params)
        return recipe
    if isinstance(recipe, type) and issubclass(recipe, InitRecipe):
        obj = recipe()
    else:
        obj = RECIPES.get(recipe)()  # NotFoundError listing known recipes
    _set(obj, params)
    return obj


def _set(obj: InitRecipe, params: dict) -> None:
    known = set(obj.param) - {"name"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"Unknown parameter(s) {unknown} for init recipe {type(obj).__name__}; it accepts: {', '.join(sorted(known))}.")
    try:
        obj.param.update(**params)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"Bad parameter for init recipe {type(obj).__name__}: {exc}") from None


def target_parameters(model: nn.Module, recipe: InitRecipe) -> dict[str, tuple[nn.Parameter, bool]]:
    """Canonical name → (parameter, stored transposed?) of the 2-D weights the recipe selects."""
    inc, exc = recipe.compile_selection()
    owners = owner_modules(model)
    found: dict[str, tuple[nn.Parameter, bool]] = {}
    for raw, p in model.named_parameters():
        if p.ndim != 2:
            continue
        name = canonical_name(raw)
        owner = owners.get(raw)
        if name in found or not inc.search(name) or exc.search(name):
            continue
        if isinstance(owner, nn.Embedding) and not recipe.embeddings:
            continue
        if any(m in raw for m in ("lora_", "workbench_adapter")):
            continue
        found[name] = (p, owner is not None and is_conv1d(owner))
    if not found:
        names = [canonical_name(n) for n, p in model.named_parameters() if p.ndim == 2]
        raise ConfigError(f"Init selection include={recipe.include!r} exclude={recipe.exclude!r} matches no weight matrix "
                          f"(embeddings={recipe.embeddings}). Matrices: {', '.join(names[:20])}{' …' if len(names) > 20 else ''}.")
    return found


@torch.no_grad()
def _transform_all(recipe, model, targets, context) -> dict[str, torch.Tensor]:
    out = {}
    for name, (p, transposed) in targets.items():
        w = (p.detach().T if transposed else p.detach()).float().clone()  # [out, in]
        new = recipe.transform(w, name, context)
        if new.shape != w.shape or not torch.isfinite(new).all():
            raise ConfigError(f"Init recipe {type(recipe).__name__} produced a bad matrix for {name!r} "
                              f"(shape {tuple(new.shape)} vs {tuple(w.shape)}, or non-finite values).")
        out[name] = new
    return out


def plan(model: nn.Module, recipe: str | InitRecipe, data=None, loss=None, **params) -> dict[str, torch.Tensor]:
    """The new ``[out, in]`` fp32 matrices the recipe would write, by canonical name; the model is untouched."""
    recipe = resolve(recipe, **params)
    targets = target_parameters(model, recipe)
    context = {"data": data, "loss": loss, "params": targets}
    context.update(recipe.prepare(model, list(targets), context) or {})
    return _transform_all(recipe, model, targets, context)


def apply(model: nn.Module, recipe: str | InitRecipe, data=None, loss=None, **params) -> list[str]:
    """Re-initialize the selected matrices of ``model`` in place; returns the names changed.

    Every new matrix is computed and validated before any weight is written, so a bad rank, an empty
    selection or an unknown recipe raises a :class:`~workbench.errors.ConfigError` (or ``NotFoundError``)
    with the model untouched. The model's ``workbench_origin`` gets an ``init`` entry describing the recipe.
    """
    recipe = resolve(recipe, **params)
    new = plan(model, recipe, data=data, loss=loss)
    targets = target_parameters(model, recipe)
    with torch.no_grad():
        for name, w in new.items():
            p, transposed = targets[name]
            p.copy_((w.T if transposed else w).to(dtype=p.dtype, device=p.device))
    origin = getattr(model, "workbench_origin", None)
    if isinstance(origin, dict):
        origin.setdefault("init", []).append({**recipe.describe(), "matrices": list(new)})
    return list(new)
