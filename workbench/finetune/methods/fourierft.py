"""FourierFT (PEFT ``FourierFTConfig``): ΔW is the inverse 2-D Fourier transform of ``n_frequency`` trainable
spectral coefficients at fixed random positions, times ``fourier_scaling``.

The update is dense and, in general, full-rank although it has only ``n_frequency`` parameters per matrix:
the opposite of LoRA's structure at a similar budget. Works on ``nn.Linear`` and GPT-2's ``Conv1D``
(``fan_in_fan_out``).
"""

from __future__ import annotations

import param

from ...errors import ConfigError
from .. import adapters
from .base import METHODS, Method, peft_wrap


@METHODS.register("fourierft", help="FourierFT: ΔW = scaling · IDFT2 of n_frequency trainable coefficients")
class FourierFT(Method):
    """PEFT FourierFT on the targeted layers (the stage's ``rank`` and ``alpha`` are not used)."""

    uses = ("target_modules",)
    trainable_markers = ("fourierft_spectrum",)

    n_frequency = param.Integer(default=100, bounds=(1, None),
                                doc="Trainable spectral coefficients per matrix (≤ out·in of every targeted matrix).")
    fourier_scaling = param.Number(default=150.0, bounds=(0, None), inclusive_bounds=(False, True),
                                   doc="Scale of ΔW (PEFT's `scaling`; the paper uses 100–300).")
    random_loc_seed = param.Integer(default=777, doc="Seed of the fixed random frequency positions (PEFT's).")
    zero_init = param.Boolean(default=True, doc="Spectrum starts at 0 (ΔW = 0 at step 0, PEFT init_weights=True); "
                                                "False: standard normal, PEFT's default, not a no-op.")

    def check(self, stage, model):
        targets = super().check(stage, model)
        name, module = min(targets.items(), key=lambda kv: adapters.shape_of(kv[1])[0] * adapters.shape_of(kv[1])[1])
        out_f, in_f = adapters.shape_of(module)
        if self.n_frequency > out_f * in_f:
            raise ConfigError(f"n_frequency={self.n_frequency} is more than the {out_f * in_f} entries of the targeted "
                              f"matrix {name!r} ({out_f}×{in_f}); use n_frequency ≤ {out_f * in_f} or exclude it.")
        return targets

    def build(self, stage, model, targets, batches):
        from peft import FourierFTConfig

        config = FourierFTConfig(n_frequency=self.n_frequency, scaling=self.fourier_scaling,
                                 random_loc_seed=self.random_loc_seed, init_weights=self.zero_init,
                                 target_modules=sorted(targets),
                                 fan_in_fan_out=any(adapters.is_conv1d(m) for m in targets.values()), bias="none")
        return peft_wrap(model, config)

    def scaling(self, stage) -> float:
        return float(self.fourier_scaling)
