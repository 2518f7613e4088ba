"""What an init recipe is: a small ``param.Parameterized`` class that maps matrices to new matrices.

A recipe declares its parameters (so a panel can show them and a record can store them) and
implements ``transform(w, name, context) -> new_w`` on one ``[out, in]`` matrix. Which matrices it
touches is decided by two regular expressions, ``include`` and ``exclude``, searched in the canonical
names of :func:`workbench.matrices.weight_matrices` (``"weight_rec"``, ``"h.0.attn.c_attn.weight"``…).

:func:`workbench.init.apply` computes *every* new matrix first (validating shapes, ranks and data)
and only then writes them into the model under ``torch.no_grad()``, so a bad recipe never leaves a
model half-initialized.
"""

from __future__ import annotations

import re

import param
import torch

from ..errors import ConfigError


class InitRecipe(param.Parameterized):
    """Base class of init recipes: selection + a per-matrix transform.

    Subclasses set ``needs_data = True`` when ``transform`` needs task data (``context["data"]``).
    """

    include = param.String(default=r".*", doc="Regex searched in canonical matrix names: which matrices to re-initialize.")
    exclude = param.String(default=r"$^", doc="Regex of canonical names to leave alone (default: none).")
    embeddings = param.Boolean(default=False, doc="Also re-initialize nn.Embedding tables.")
    seed = param.Integer(default=0, doc="Seeds the recipe's own torch.Generator (global RNG untouched).")

    needs_data = False

    def generator(self, device="cpu") -> torch.Generator:
        """A fresh generator seeded by ``seed`` (each apply is reproducible, training RNG untouched)."""
        return torch.Generator(device=device).manual_seed(int(self.seed))

    def compile_selection(self) -> tuple[re.Pattern, re.Pattern]:
        try:
            return re.compile(self.include), re.compile(self.exclude)
        except re.error as exc:
            raise ConfigError(f"{type(self).__name__}: include/exclude must be valid regular expressions ({exc}); "
                              f"got include={self.include!r}, exclude={self.exclude!r}.") from None

    def prepare(self, model, names: list[str], context: dict) -> dict:
        """Compute shared statistics once before transforming (e.g. a task gradient); returns extra context."""
        return {}

    def transform(self, w: torch.Tensor, name: str, context: dict) -> torch.Tensor:  # pragma: no cover - abstract
        """The new ``[out, in]`` fp32 matrix for ``w`` (fp32, detached clone); raise ConfigError if impossible."""
        raise NotImplementedError

    def copy(self, **params) -> "InitRecipe":
        """A new recipe of the same kind with the same values, ``params`` overriding."""
        vals = {k: v for k, v in self.param.values().items() if k != "name"}
        return type(self)(**{**vals, **params})

    def describe(self) -> dict:
        """Recipe name and declared parameter values (what a record stores)."""
        vals = {k: v for k, v in self.param.values().items() if k != "name"}
        return {"recipe": getattr(type(self), "recipe_name", type(self).__name__), **vals}


def frobenius_rescale(new: torch.Tensor, like: torch.Tensor, name: str) -> torch.Tensor:
    """``new`` scaled to the Frobenius norm of ``like`` (equal-norm comparisons of inits)."""
    target, norm = like.norm(), new.norm()
    if norm <= 0 or not torch.isfinite(norm):
        raise ConfigError(f"Matrix {name!r}: the new init is zero (or not finite), so it cannot be rescaled to "
                          f"‖W‖_F = {float(target):.3g}. Check the task data or choose another recipe.")
    return new * (target / norm)


def truncate(w: torch.Tensor, rank: int) -> torch.Tensor:
    """Best rank-``rank`` approximation of ``w`` (SVD truncation)."""
    u, s, vh = torch.linalg.svd(w, full_matrices=False)  # [out, k], [k], [k, in]
    return (u[:, :rank] * s[:rank]) @ vh[:rank]


def check_rank(rank: int, w: torch.Tensor, name: str) -> None:
    full = min(w.shape)
    if not isinstance(rank, int) or rank < 1 or rank > full:
        raise ConfigError(f"rank must be between 1 and min(out, in) = {full} for matrix {name!r} {tuple(w.shape)}, "
                          f"got {rank!r}. Use rank ≤ {full}, or narrow `include` to larger matrices.")
