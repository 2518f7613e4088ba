"""LoRA-SB: B·R·A with fixed B, A from the first full gradient and a trainable r×r R (see :mod:`..lora_sb`)."""

from __future__ import annotations

from .. import adapters
from .base import METHODS, Method


@METHODS.register("lora_sb", help="LoRA-SB: W0 + s·B R A, trainable r×r R, B and A from the first full gradient")
class LoraSB(Method):
    """The workbench's LoRA-SB layers (PEFT has none); ``sb_start`` picks R0."""

    uses = ("rank", "alpha", "target_modules", "dropout", "use_rslora", "init_batches", "sb_start")
    trainable_markers = ("workbench_adapter_R",)

    def check(self, stage, model):
        return adapters.check(model, "lora_sb", stage.rank, stage.alpha, stage.target_modules, stage.init,
                              stage.use_dora, has_data=stage.init_batches > 0)

    def build(self, stage, model, targets, batches):
        return adapters.build(model, "lora_sb", targets, stage.rank, stage.alpha, stage.init, stage.dropout,
                              stage.use_rslora, stage.use_dora, batches, stage.data.loss, stage.sb_start, stage.lr)

    def scaling(self, stage) -> float:
        return adapters.scaling(stage.alpha, stage.rank, stage.use_rslora)
