"""PEFT LoRA with every offline init (:mod:`workbench.finetune.inits`), rsLoRA and DoRA."""

from __future__ import annotations

from .. import adapters
from .base import METHODS, Method


@METHODS.register("lora", help="PEFT LoRA: W0 + s·BA (inits, rsLoRA, DoRA; optimizers lora_fa / loraplus)")
class Lora(Method):
    """``peft.LoraConfig`` from the stage's ``rank``, ``alpha``, ``init``, ``dropout``, ``use_rslora``, ``use_dora``."""

    uses = ("rank", "alpha", "target_modules", "dropout", "use_rslora", "use_dora", "init", "init_batches")
    trainable_markers = ("lora_",)

    def check(self, stage, model):
        return adapters.check(model, "lora", stage.rank, stage.alpha, stage.target_modules, stage.init, stage.use_dora,
                              has_data=stage.init_batches > 0)

    def build(self, stage, model, targets, batches):
        return adapters.build(model, "lora", targets, stage.rank, stage.alpha, stage.init, stage.dropout,
                              stage.use_rslora, stage.use_dora, batches, stage.data.loss)

    def scaling(self, stage) -> float:
        return adapters.scaling(stage.alpha, stage.rank, stage.use_rslora)
