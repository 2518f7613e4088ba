"""AdaLoRA (PEFT ``AdaLoraConfig``): W0 + B·diag(E)·A with a rank budget that moves between matrices.

The stage's ``rank`` is AdaLoRA's ``init_r`` (every matrix starts with it) and ``max_steps`` its
``total_step``; ``target_r`` is the final mean rank. PEFT's schedule: ``tinit`` warm-up steps at full
budget, a cubic decrease of the budget, ``tfinal`` steps at the final budget.

**Driven from the training loop.** PEFT's ``update_and_allocate(global_step)`` (sensitivity EMA of every
triplet, then masking E to the budget) must run after the optimizer step and before the gradients are
zeroed — PEFT's documented order is ``backward(); optimizer.step(); update_and_allocate(i);
zero_grad()``. :class:`workbench.Run` zeroes gradients at the start of the next step, so the method
attaches it to ``after_step`` (the gradients are still there), before every probe: spectra and ΔW see the
masked weights. ``global_step`` is the 0-based index of the step just taken (PEFT's loop variable).

**Recorded**: ``adalora_rank`` (``step × matrix``): the rank each matrix currently holds (its unmasked
triplets; ``init_r`` before the first masking), every step.

**Orthogonality penalty.** PEFT adds ``orth_reg_weight · ‖PᵀP − I‖`` to the model's loss whenever labels
are passed; here it is applied in training mode only, so ``val_loss`` and ``pretrain_loss`` stay the plain
task losses, comparable with every other method.

**Resume.** The sensitivity EMAs and the rank pattern live outside the model; :meth:`AdaLora.extra_state`
carries them in checkpoints, so a resumed run masks exactly as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import param
import xarray as xr

from ...errors import ConfigError
from ...probes import Probe
from .. import adapters
from .base import METHODS, Method, check_positive_rank, peft_wrap


@METHODS.register("adalora", help="AdaLoRA: B·diag(E)·A with its rank budget reallocated between matrices")
class AdaLora(Method):
    """PEFT AdaLoRA; ``rank`` = init_r, ``alpha`` = lora_alpha, ``max_steps`` = total_step."""

    uses = ("rank", "alpha", "target_modules", "dropout", "max_steps")
    trainable_markers = ("lora_A", "lora_B", "lora_E")

    target_r = param.Integer(default=4, bounds=(1, None), doc="Final mean rank per matrix (≤ the stage's rank, init_r).")
    tinit = param.Integer(default=0, bounds=(0, None), doc="Warm-up steps at the full budget.")
    tfinal = param.Integer(default=0, bounds=(0, None), doc="Last steps at the final budget (ranks then fixed).")
    deltaT = param.Integer(default=1, bounds=(1, None), doc="Reallocate the budget every this many steps.")
    beta1 = param.Number(default=0.85, bounds=(0, 1), doc="EMA factor of the sensitivity.")
    beta2 = param.Number(default=0.85, bounds=(0, 1), doc="EMA factor of the sensitivity's uncertainty.")
    orth_reg_weight = param.Number(default=0.5, bounds=(0, None), doc="Weight of the orthogonality penalty on A, B.")

    def check(self, stage, model):
        targets = super().check(stage, model)
        check_positive_rank(stage.rank, "rank (AdaLoRA's init_r)")
        if stage.use_dora:
            raise ConfigError("AdaLoRA does not support DoRA in PEFT; set use_dora=False.")
        if self.target_r > stage.rank:
            raise ConfigError(f"target_r={self.target_r} is larger than init_r = rank = {stage.rank}: AdaLoRA only "
                              "removes rank. Lower target_r or raise rank.")
        name, module = min(targets.items(), key=lambda kv: min(adapters.shape_of(kv[1])))
        if stage.rank > min(adapters.shape_of(module)):
            raise ConfigError(f"rank {stage.rank} is larger than the targeted matrix {name!r} of shape "
                              f"{adapters.shape_of(module)} allows; lower the rank.")
        if not (isinstance(stage.alpha, (int, float)) and stage.alpha > 0):
            raise ConfigError(f"alpha must be a number > 0, got {stage.alpha!r}.")
        if self.tinit >= stage.max_steps - self.tfinal:
            raise ConfigError(f"AdaLoRA's schedule leaves no budgeting phase: tinit={self.tinit} ≥ max_steps − tfinal "
                              f"= {stage.max_steps} − {self.tfinal}. Lower tinit/tfinal or raise max_steps.")
        return targets

    def build(self, stage, model, targets, batches):
        from peft import AdaLoraConfig

        config = AdaLoraConfig(init_r=stage.rank, target_r=self.target_r, lora_alpha=stage.alpha,
                               lora_dropout=stage.dropout, total_step=stage.max_steps, tinit=self.tinit,
                               tfinal=self.tfinal, deltaT=self.deltaT, beta1=self.beta1, beta2=self.beta2,
                               orth_reg_weight=self.orth_reg_weight, target_modules=sorted(targets), bias="none",
                               fan_in_fan_out=any(adapters.is_conv1d(m) for m in targets.values()))
        peft_model = peft_wrap(model, config)
        weight = float(self.orth_reg_weight)

        def train_only_penalty(module, args, kwargs):  # PEFT reads orth_reg_weight at every forward
            module.peft_config[module.trainable_adapter_name].orth_reg_weight = weight if module.training else 0.0

        peft_model.base_model.register_forward_pre_hook(train_only_penalty, with_kwargs=True)
        return peft_model

    def scaling(self, stage) -> float:
        return float(stage.alpha)  # PEFT's AdaLoRA scale is lora_alpha (E carries the magnitudes)

    def attach(self, run) -> None:
        def allocate(run, **_):
            run.model.base_model.update_and_allocate(run.global_step - 1)

        run.add_callback("after_step", allocate, name="AdaLoRA.update_and_allocate")
        run.add_probe(AdaLoraRankProbe(every=1))

    def extra_state(self, run) -> dict:
        alloc = run.model.base_model.rankallocator
        config = run.model.peft_config[run.model.base_model.trainable_adapter_name]
        clone = lambda d: {k: v.detach().cpu().clone() for k, v in d.items()}  # noqa: E731
        return {"ipt": clone(alloc.ipt), "exp_avg_ipt": clone(alloc.exp_avg_ipt),
                "exp_avg_unc": clone(alloc.exp_avg_unc), "rank_pattern": config.rank_pattern}

    def load_extra_state(self, run, state: dict) -> None:
        if not state:
            return
        alloc = run.model.base_model.rankallocator
        device = run.torch_device
        for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
            setattr(alloc, key, {k: v.to(device) for k, v in state[key].items()})
        run.model.peft_config[run.model.base_model.trainable_adapter_name].rank_pattern = state["rank_pattern"]


def current_ranks(model) -> dict[str, int]:
    """Rank each AdaLoRA matrix holds now, by canonical matrix name (``init_r`` before the first masking)."""
    base = model.base_model
    config = model.peft_config[base.trainable_adapter_name]
    pattern = config.rank_pattern or {}
    out = {}
    for name, param_ in base.model.named_parameters():
        if f"lora_E.{base.trainable_adapter_name}" not in name:
            continue
        module = name.split(".lora_E.")[0]
        out[f"{module}.weight"] = int(sum(pattern[name])) if name in pattern else int(param_.shape[0])
    return out


class AdaLoraRankProbe(Probe):
    """``adalora_rank`` (``step × matrix``): AdaLoRA's current rank of every adapted matrix."""

    def measure(self, run) -> dict:
        ranks = current_ranks(run.model)
        names = list(ranks)
        return {"adalora_rank": xr.DataArray(np.array([ranks[n] for n in names], dtype=float), dims="matrix",
                                             coords={"matrix": names})}

