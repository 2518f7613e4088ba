"""VeRA (PEFT ``VeraConfig``): ΔW = Λ_b B Λ_d A with B, A random, frozen and *shared by every layer*; only the
scaling vectors d (``r``) and b (``out``) train.

The update is rank ≤ r like LoRA's, but its subspace is a fixed random projection chosen before training
rather than learned. Works on ``nn.Linear`` and GPT-2's ``Conv1D`` (``fan_in_fan_out``).
"""

from __future__ import annotations

import param

from .. import adapters
from .base import METHODS, Method, check_positive_rank, peft_wrap


@METHODS.register("vera", help="VeRA: ΔW = diag(b) B diag(d) A, shared frozen random B, A; trains d and b")
class Vera(Method):
    """PEFT VeRA; the stage's ``rank`` is the shared projections' rank (VeRA uses large ranks, e.g. 256)."""

    uses = ("rank", "target_modules", "dropout")
    trainable_markers = ("vera_lambda_",)

    projection_prng_key = param.Integer(default=0, doc="Seed of the shared random projections A and B (PEFT's).")
    d_initial = param.Number(default=0.1, bounds=(0, None), doc="Initial value of every entry of d (b starts at 0).")

    def check(self, stage, model):
        targets = super().check(stage, model)
        check_positive_rank(stage.rank)
        return targets

    def build(self, stage, model, targets, batches):
        from peft import VeraConfig

        config = VeraConfig(r=stage.rank, target_modules=sorted(targets), vera_dropout=stage.dropout,
                            projection_prng_key=self.projection_prng_key, d_initial=self.d_initial,
                            save_projection=True, bias="none",
                            fan_in_fan_out=any(adapters.is_conv1d(m) for m in targets.values()))
        return peft_wrap(model, config)
