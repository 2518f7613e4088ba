"""RMU — Representation Misdirection for Unlearning (Li et al., 2024, "The WMDP Benchmark").

At one chosen layer ℓ, steer the activations of forget tokens toward a fixed random direction and keep
the activations of retain tokens where the frozen model has them:

L_RMU(θ) = mean_{forget tokens t} ‖h_θ^ℓ(t) − c·u‖² / d  +  retain_weight · mean_{retain tokens t} ‖h_θ^ℓ(t) − h_ref^ℓ(t)‖² / d

u is a random unit vector (entries drawn from U[0, 1), then normalized; seeded by the stage's ``seed``),
c is ``steer_coeff``, d the hidden size. Tokens are all real (non-padding) tokens of the sequence, as in
the paper (RMU steers the whole forget text, not only the answer). ``rmu_layer`` is the block index
(0-based); −1 picks the middle block. The hidden state after block ℓ is ``hidden_states[ℓ + 1]``.
"""

from __future__ import annotations

import param
import torch

from ...errors import ConfigError
from .base import METHODS, WithRetain


def _n_layers(model) -> int:
    cfg = model.config
    return int(getattr(cfg, "n_layer", None) or getattr(cfg, "num_hidden_layers"))


def _hidden(model, batch: dict, layer: int) -> torch.Tensor:
    out = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), output_hidden_states=True)
    return out.hidden_states[layer + 1].float()  # [B, T, d]


@METHODS.register("rmu", help="steer a layer's forget activations to a random direction")
class RMU(WithRetain):
    needs_reference = True
    formula = "L = mean‖h_θ − c·u‖²/d + λ·mean‖h_θ − h_ref‖²/d  (layer ℓ)"

    retain_weight = param.Number(default=1.0, bounds=(0, None), inclusive_bounds=(False, True),
                                 doc="Weight α > 0 of the retain activation term (without it the model is destroyed; "
                                     "the paper uses 100s).")
    steer_coeff = param.Number(default=20.0, bounds=(0, None), inclusive_bounds=(False, True),
                               doc="Scale c > 0 of the random steering direction.")
    rmu_layer = param.Integer(default=-1, bounds=(-1, None), doc="Block whose output is steered (0-based; -1 = middle).")

    def __init__(self, **params):
        super().__init__(**params)
        self._control: torch.Tensor | None = None
        self._key = None

    def layer(self, stage) -> int:
        n = _n_layers(stage.model)
        layer = self.rmu_layer if self.rmu_layer >= 0 else n // 2 - 1 if n > 1 else 0
        if not 0 <= layer < n:
            raise ConfigError(f"rmu_layer={self.rmu_layer} but the model has {n} blocks (0..{n - 1}); use -1 for the middle.")
        return layer

    def control(self, stage, d: int, device) -> torch.Tensor:
        """The steering target c·u ``[d]`` (fixed for the run; u seeded by the stage's ``seed``)."""
        key = (d, int(stage.seed), float(self.steer_coeff), str(device))
        if self._control is None or self._key != key:
            gen = torch.Generator().manual_seed(int(stage.seed) + 7919)
            u = torch.rand(d, generator=gen)
            self._control = (self.steer_coeff * u / u.norm()).to(device)
            self._key = key
        return self._control

    def forget_term(self, stage, forget):
        layer = self.layer(stage)
        h = _hidden(stage.model, forget, layer)  # [B, T, d]
        mask = forget["attention_mask"].unsqueeze(-1).float()  # [B, T, 1]
        target = self.control(stage, h.shape[-1], h.device)  # [d]
        err = ((h - target) ** 2 * mask).sum() / (mask.sum() * h.shape[-1])
        return err, {"rmu_forget_mse": float(err.detach()), "rmu_layer": float(layer)}

    def retain_term(self, stage, retain):
        layer = self.layer(stage)
        h = _hidden(stage.model, retain, layer)  # [B, T, d]
        with torch.no_grad():
            h_ref = _hidden(stage.reference_model, retain, layer)
        mask = retain["attention_mask"].unsqueeze(-1).float()
        err = ((h - h_ref) ** 2 * mask).sum() / (mask.sum() * h.shape[-1])
        return self.retain_weight * err, {"rmu_retain_mse": float(err.detach())}
