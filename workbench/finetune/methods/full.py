"""Full fine-tuning: every weight of the model trains; ``target_modules`` only selects what is measured."""

from __future__ import annotations

from .. import adapters
from .base import METHODS, Method


@METHODS.register("full", help="full fine-tuning: every weight trains (targets = the matrices measured)")
class Full(Method):
    """Every parameter trainable; ΔW, spectra and intruders are measured on the targeted matrices."""

    def check(self, stage, model):
        return adapters.check(model, "full", stage.rank, stage.alpha, stage.target_modules, stage.init)

    def build(self, stage, model, targets, batches):
        return adapters.build(model, "full", targets, stage.rank, stage.alpha, stage.init)
