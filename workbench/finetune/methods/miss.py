"""MiSS (formerly Bone; PEFT ``MissConfig``): ΔW built from one small trainable block shared across the matrix.

PEFT 0.21.2's three variants, as ``variant``:

* ``miss`` — a block ``D [r, out]``; the input is cut into ``in/r`` chunks of size r, summed, and mapped
  by D: ΔW = [D; D; …]ᵀ, the same r columns repeated (``r · out`` parameters per matrix).
* ``bat`` — Bone's block-affine transform: ``out/r`` blocks ``[r, r]`` that act on W0's own r×r blocks
  (ΔW depends on W0; needs r | in and r | out).
* ``mini`` — a block ``[r, mini_r]`` tiled along the output (``r · mini_r`` parameters; needs mini_r | out).

ΔW is not low-rank by construction in the sense of LoRA's B·A; whether it creates intruder dimensions is
what the ``peft_family`` notebook measures. PEFT accepts only ``nn.Linear`` (not GPT-2's Conv1D).
"""

from __future__ import annotations

import math

import param

from ...errors import ConfigError
from .. import adapters
from .base import METHODS, Method, check_positive_rank, peft_wrap


@METHODS.register("miss", help="MiSS / Bone: ΔW from a shared r-wide block (variants miss, bat, mini); PEFT MissConfig")
class Miss(Method):
    """PEFT MiSS on the targeted ``nn.Linear`` layers; the stage's ``rank`` is MiSS's block size r."""

    uses = ("rank", "target_modules", "dropout")
    conv1d = False
    trainable_markers = ("miss_block",)

    variant = param.Selector(default="miss", objects=["miss", "bat", "mini"],
                             doc="miss: D [r, out] shared over input chunks; bat: block-affine on W0's r×r blocks; "
                                 "mini: a [r, mini_r] block tiled over the output.")
    mini_r = param.Integer(default=1, bounds=(1, None), doc="Width of the tiled block of variant 'mini' (divides out).")

    def check(self, stage, model):
        targets = super().check(stage, model)
        r = stage.rank
        check_positive_rank(r)
        for name, module in targets.items():
            out_f, in_f = adapters.shape_of(module)
            if r > in_f:
                raise ConfigError(f"MiSS rank (block size) {r} is larger than the input dimension {in_f} of {name!r}; "
                                  f"use rank ≤ {in_f}.")
            if self.variant == "bat" and (in_f % r or out_f % r):
                raise ConfigError(f"MiSS variant 'bat' needs rank {r} to divide both dimensions of {name!r} "
                                  f"({out_f}×{in_f}); pick a common divisor (e.g. {_common_divisor(out_f, in_f, r)}).")
            if self.variant == "mini" and out_f % self.mini_r:
                common = math.gcd(*(adapters.shape_of(m)[0] for m in targets.values()))
                raise ConfigError(f"MiSS variant 'mini' needs mini_r={self.mini_r} to divide the output dimension "
                                  f"{out_f} of {name!r}; pick a divisor of every targeted output dimension "
                                  f"(their greatest common divisor is {common}).")
        return targets

    def build(self, stage, model, targets, batches):
        from peft import MissConfig

        init = True if self.variant == "miss" else self.variant
        config = MissConfig(r=stage.rank, target_modules=sorted(targets), miss_dropout=stage.dropout,
                            init_weights=init, mini_r=self.mini_r, bias="none")
        return peft_wrap(model, config)


def _common_divisor(a: int, b: int, below: int) -> int:
    return max(d for d in range(1, below + 1) if a % d == 0 and b % d == 0)
