"""What an unlearning method is: a forget term (what SAM sharpens) and an optional retain term.

A method is a small class registered in :data:`METHODS` (one file each). ``terms(stage, forget,
retain)`` returns :class:`Terms`; the stage adds them (``forget + retain``), or, with SAM, evaluates the
forget term at the perturbed weights and the retain term at the current ones. Hyperparameters live on
the stage (``beta``, ``retain_weight``, ``delta``, …: declared params, so the panel, papermill and the
record all see them); the method reads them from ``stage``.

Flags the stage checks before anything runs: ``needs_reference`` (frozen π_ref), ``needs_retain(stage)``
(a retain set must be given), ``needs_refusal`` (the forget batch must carry ``refusal_*`` tensors).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...registry import Registry

METHODS = Registry("unlearning method", hint="Methods live in workbench/unlearn/methods/, one file each.")


@dataclass
class Terms:
    """The loss of one step split in two: ``forget`` (on forget data) and ``retain`` (or ``None``)."""

    forget: torch.Tensor
    retain: torch.Tensor | None = None
    metrics: dict = field(default_factory=dict)

    @property
    def total(self) -> torch.Tensor:
        return self.forget if self.retain is None else self.forget + self.retain


class Method:
    """Base class; subclasses implement ``forget_term`` (and override flags)."""

    name = ""
    needs_reference = False
    needs_refusal = False
    formula = ""

    def needs_retain(self, stage) -> bool:
        """Whether a retain batch is used (methods with a ``retain_weight · NLL_retain`` term)."""
        return stage.retain_weight > 0

    def forget_term(self, stage, forget: dict) -> tuple[torch.Tensor, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def retain_term(self, stage, retain: dict) -> tuple[torch.Tensor, dict]:
        """``retain_weight · mean token NLL`` on retain answers (GradDiff's and NPO+RT's retain term)."""
        from ..losses import mean_token_nll

        nll = mean_token_nll(stage.model, retain)
        return stage.retain_weight * nll, {"retain_nll": float(nll.detach())}

    def terms(self, stage, forget: dict, retain: dict | None) -> Terms:
        f, metrics = self.forget_term(stage, forget)
        r = None
        if retain is not None and self.needs_retain(stage):
            r, m = self.retain_term(stage, retain)
            metrics.update(m)
        return Terms(f, r, metrics)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
