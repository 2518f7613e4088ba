"""The unlearning stage: a :class:`workbench.Run` whose step is an unlearning method's step.

>>> from workbench.unlearn import Unlearn, FactsBenchmark                            # doctest: +SKIP
>>> bench = FactsBenchmark(40)                                                       # doctest: +SKIP
>>> run = Unlearn(target, bench.split("forget"), bench.split("retain"), method="npo", beta=0.1,
...               retain_weight=1.0, sam_rho=0.01, max_steps=50)                     # doctest: +SKIP
>>> run.run()                                                                        # doctest: +SKIP

Each step draws a forget batch (the run's ``train`` split, batch ``i`` a pure function of the seed) and,
when the method uses one, a retain batch from the retain split (seed + 1, same step index). The method
(``METHODS[method]``) returns a forget term and a retain term; the stage backpropagates them plainly or
with SAM (``sam_rho > 0``: the forget term is taken at the sharpness-perturbed weights). Options:

* ``mask_fraction`` > 0: WAGLE weight attribution — only the top fraction of weights by
  |(θ − ∇ℓ_retain/μ) ⊙ ∇ℓ_forget| (computed once, at setup) may change (see :mod:`.wagle`);
* ``lora_rank`` > 0: unlearn through a PEFT LoRA adapter (``get_peft_model`` + ``LoraConfig``) on every
  linear layer but the LM head; read at construction.

The frozen reference π_ref (``run.reference_model``) is a deep copy of the model made at construction,
in eval mode with ``requires_grad=False``; nothing in the stage writes to it.

Every check on the arguments (unknown method, β ≤ 0, empty or overlapping forget/retain sets, a method
that needs a retain set or template refusals it does not have) runs before the model is touched.
"""

from __future__ import annotations

import copy

import param
import torch
from torch import nn

from ..data.base import Dataset, Split, to_device
from ..errors import ConfigError
from ..run import Run
from .methods import METHODS
from .methods.flat import DIVERGENCES
from .sam import plain_backward, sam_backward
from .wagle import WeightMask, attribution_scores, named_trainable, top_fraction_mask


def _as_split(x, name: str) -> Split | None:
    if x is None:
        return None
    if isinstance(x, Split):
        return x
    if isinstance(x, Dataset):  # e.g. Run.resume passes the run's data back: its train split is the forget set
        return x.train
    if isinstance(x, dict):
        sizes = {int(v.shape[0]) for v in x.values()} if x else {0}
        if sizes == {0}:
            raise ConfigError(f"The {name} set is empty: give it at least one example "
                              f"(e.g. bench.split('{name}', forget_fraction=0.1)).")
        return Split(x, name=name)
    raise ConfigError(f"The {name} set must be a workbench Split or a dict of tensors, got {type(x).__name__}.")


def _row_keys(split: Split) -> set:
    if "fact_id" in split.tensors:
        return set(split.tensors["fact_id"].tolist())
    return {tuple(r) for r in split.tensors["input_ids"].tolist()}


def lora_targets(model: nn.Module) -> list[str]:
    """Names (last segment) of every linear / GPT-2 ``Conv1D`` layer except the LM head."""
    names = set()
    for mname, mod in model.named_modules():
        if isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D":
            leaf = mname.split(".")[-1]
            if leaf not in ("lm_head", "score"):
                names.add(leaf)
    return sorted(names)


class Unlearn(Run):
    """Unlearn ``forget`` from ``model`` while keeping ``retain``.

    Parameters
    ----------
    model : the target model (``nn.Module``, a preset name or a model directory). Trained in place, as in
        every Run (with ``lora_rank > 0`` PEFT also injects its adapters into it): pass
        ``copy.deepcopy(target)`` to keep the target.
    forget : :class:`Split` (or dict of tensors) of forget examples; ``labels`` -100 outside the answers.
    retain : :class:`Split` of retain examples (needed by GradDiff, RMU, NPO/SimNPO with
        ``retain_weight > 0`` and the WAGLE mask); must not share facts (``fact_id``) or rows with ``forget``.
    reference_model : π_ref; by default a deep copy of ``model`` made here (after LoRA wrapping).
    **params : declared parameters below and every :class:`workbench.Run` parameter.
    """

    method = param.Selector(default="npo", objects=METHODS.names(), check_on_set=False,
                            doc="Unlearning method (METHODS registry; methods registered later are accepted too).")
    beta = param.Number(default=0.1, doc="Inverse temperature of NPO / SimNPO (> 0).")
    retain_weight = param.Number(default=1.0, doc="Weight of the retain term (GradDiff, NPO+RT, SimNPO+RT, RMU's α); 0 = off.")
    delta = param.Number(default=0.0, doc="SimNPO margin δ.")
    steer_coeff = param.Number(default=20.0, doc="RMU: scale c of the random steering direction.")
    rmu_layer = param.Integer(default=-1, doc="RMU: block whose output is steered (-1 = middle).")
    f_divergence = param.Selector(default="kl", objects=sorted(DIVERGENCES), doc="FLAT: which f-divergence.")
    sam_rho = param.Number(default=0.0, bounds=(0, None), doc="SAM radius ρ on the forget term (0 = off).")
    mask_fraction = param.Number(default=0.0, bounds=(0, 1), doc="WAGLE: fraction of weights allowed to change (0 = all).")
    mu = param.Number(default=1.0, doc="WAGLE: μ in |(θ − ∇ℓ_retain/μ) ⊙ ∇ℓ_forget| (> 0).")
    mask_batches = param.Integer(default=2, bounds=(1, None), doc="WAGLE: batches used to score the weights.")
    lora_rank = param.Integer(default=0, bounds=(0, None), doc="LoRA rank (0 = full parameters); read at construction.")
    lr = param.Number(default=1e-4, bounds=(0, None), inclusive_bounds=(False, True), doc="Peak learning rate (> 0).")
    batch_size = param.Integer(default=8, bounds=(1, None), doc="Forget (and retain) examples per step.")
    max_steps = param.Integer(default=50, bounds=(1, None), doc="Unlearning steps of run().")
    eval_every = param.Integer(default=0, bounds=(0, None), doc="Held-out loss every N steps (0 = off; use UnlearnProbe).")

    def __init__(self, model, forget, retain=None, probes=(), reference_model: nn.Module | None = None, **params):
        forget = _as_split(forget, "forget")
        retain = _as_split(retain, "retain")
        self._validate_args(forget, retain, params)
        super().__init__(model, Dataset("unlearn-forget", {"train": forget}, task="lm"), probes=(), **params)
        self.retain = retain
        if self.lora_rank > 0:
            from peft import LoraConfig, get_peft_model

            targets = lora_targets(self.model)
            fan_in_fan_out = any(type(m).__name__ == "Conv1D" for m in self.model.modules())
            cfg = LoraConfig(r=self.lora_rank, lora_alpha=2 * self.lora_rank, target_modules=targets, lora_dropout=0.0,
                             fan_in_fan_out=fan_in_fan_out, bias="none")
            origin = getattr(self.model, "workbench_origin", None)
            self.model = get_peft_model(self.model, cfg)
            if origin is not None:
                self.model.workbench_origin = origin
        ref = reference_model if reference_model is not None else copy.deepcopy(self.model)
        self.reference_model = ref.eval().requires_grad_(False)
        self.weight_mask: WeightMask | None = None
        self._method_obj = None
        for probe in probes:
            self.add_probe(probe)

    # ------------------------------------------------------------------ validation (nothing modified yet)
    def _validate_args(self, forget: Split | None, retain: Split | None, params: dict) -> None:
        cls = type(self)
        get = lambda k: params.get(k, cls.param[k].default)  # noqa: E731
        if forget is None:
            raise ConfigError("Unlearn needs a forget set (a Split of the examples to forget), got None.")
        if len(forget) == 0:
            raise ConfigError("The forget set is empty: give it at least one example.")
        name = get("method")
        entry = METHODS.entry(name)  # NotFoundError with close matches for an unknown name
        for k in ("beta",):
            v = get(k)
            if not isinstance(v, (int, float)) or v <= 0:
                raise ConfigError(f"{k} must be > 0 (it divides the NPO/SimNPO loss: (2/β)·…), got {v!r}.")
        if get("mu") <= 0:
            raise ConfigError(f"mu must be > 0 (WAGLE divides the retain gradient by it), got {get('mu')!r}.")
        if get("retain_weight") < 0:
            raise ConfigError(f"retain_weight must be ≥ 0, got {get('retain_weight')!r}.")
        if get("sam_rho") < 0 or not 0 <= get("mask_fraction") <= 1:
            raise ConfigError(f"sam_rho must be ≥ 0 and mask_fraction in [0, 1]; got {get('sam_rho')!r}, {get('mask_fraction')!r}.")
        method = entry.obj()

        class _Declared:  # the declared values as the method would read them from the stage
            pass

        p = _Declared()
        for k in cls.param:
            setattr(p, k, get(k))
        if (method.needs_retain(p) or get("mask_fraction") > 0) and retain is None:
            raise ConfigError(f"Method {name!r} with retain_weight={get('retain_weight')} and mask_fraction="
                              f"{get('mask_fraction')} needs a retain set: pass retain=bench.split('retain').")
        if method.needs_refusal and "refusal_input_ids" not in forget.tensors:
            raise ConfigError(f"Method {name!r} needs template refusals in the forget split (refusal_input_ids …); "
                              "build it with bench.split('forget') (with_refusal=True).")
        if retain is not None:
            common = _row_keys(forget) & _row_keys(retain)
            if common:
                what = "facts (fact_id)" if "fact_id" in forget.tensors else "examples"
                raise ConfigError(f"The forget and retain sets overlap in {len(common)} {what}, e.g. "
                                  f"{sorted(common)[:5] if what.startswith('facts') else '(token rows)'}; an example "
                                  "cannot be both forgotten and kept. Build them from the same forget_fraction.")

    @property
    def method_impl(self):
        """The method object for the current ``method`` name (rebuilt when the name changes)."""
        if self._method_obj is None or self._method_obj.name != self.method:
            self._method_obj = METHODS.get(self.method)()
        return self._method_obj

    # ------------------------------------------------------------------ setup
    def setup(self) -> "Unlearn":
        if self.beta <= 0:
            raise ConfigError(f"beta must be > 0, got {self.beta!r}.")
        first = self._device is None
        super().setup()
        if first:
            self.reference_model.to(self._device)
        if self.mask_fraction > 0 and self.weight_mask is None:
            self._build_mask()
        return self

    def _build_mask(self) -> None:
        named = named_trainable(self.model)
        retain_n = min(len(self.retain), self.batch_size * self.mask_batches)
        forget_n = min(len(self.data.train), self.batch_size * self.mask_batches)
        fb = to_device(self.data.train.take(range(forget_n)), self._device)
        rb = to_device(self.retain.take(range(retain_n)), self._device)
        from .losses import mean_token_nll

        method = self.method_impl
        scores = attribution_scores(named, lambda: method.forget_term(self, fb)[0],
                                    lambda: mean_token_nll(self.model, rb), self.mu)
        self._attach_mask(WeightMask(named, top_fraction_mask(scores, self.mask_fraction)))

    def _attach_mask(self, mask: WeightMask) -> None:
        if self.weight_mask is not None:
            self.callbacks.remove(self.weight_mask)
        self.weight_mask = mask.attach(self)
        for probe in self.probes:  # probes measure after the mask restored the masked weights
            self.callbacks.remove(probe)
            probe.attach(self)

    # ------------------------------------------------------------------ one step
    def _retain_batch(self) -> dict | None:
        if self.retain is None or not self.method_impl.needs_retain(self):
            return None
        return to_device(self.retain.batch_at(self.global_step, self.batch_size, self.seed + 1), self._device)

    def compute_loss(self, batch: dict):
        """Total unlearning loss (forget + retain terms) and its metrics at the current weights."""
        terms = self.method_impl.terms(self, batch, self._retain_batch())
        return terms.total, terms.metrics

    def forward_backward(self, batch: dict):
        """Forget term (plainly or with SAM), then retain term; gradients left in ``.grad``."""
        method = self.method_impl
        retain = self._retain_batch()

        def forget_fn():
            with self.autocast_ctx():
                return method.forget_term(self, batch)

        def retain_fn():
            if retain is None:
                return None
            with self.autocast_ctx():
                return method.retain_term(self, retain)

        def checked_forget():
            loss, metrics = forget_fn()
            self.callbacks.trigger("after_loss", self, loss=loss)
            if not torch.isfinite(loss.detach()).item():
                self._diverged("forget loss", float(loss.detach()))
            return loss, metrics

        if self.sam_rho > 0:
            params = [p for p in self.model.parameters() if p.requires_grad]
            terms = sam_backward(checked_forget, retain_fn, params, self.sam_rho)
        else:
            terms = plain_backward(checked_forget, retain_fn)
        total = terms.total.detach()
        if not torch.isfinite(total).item():
            self._diverged("loss", float(total))
        metrics = dict(terms.metrics)
        metrics["forget_loss"] = float(terms.forget.detach())
        if terms.retain is not None:
            metrics["retain_loss"] = float(terms.retain.detach())
        return total, metrics

    def checkpoint_extra(self) -> dict:
        """π_ref and the WAGLE mask travel with checkpoints (a resumed run must not re-copy them)."""
        extra = {"reference_model": {k: v.cpu() for k, v in self.reference_model.state_dict().items()}}
        if self.weight_mask is not None:
            extra["mask"] = {n: m.cpu() for n, m in self.weight_mask.masks.items()}
            extra["mask_frozen"] = {n: t.cpu() for n, t in self.weight_mask.frozen.items()}
        return extra

    def load_checkpoint_extra(self, extra: dict) -> None:
        if "reference_model" in extra:
            self.reference_model.load_state_dict(extra["reference_model"])
        if "mask" in extra:
            named = named_trainable(self.model)  # (setup() during loading scored the loaded weights: replaced here)
            mask = WeightMask(named, extra["mask"])
            mask.frozen = {n: t.to(named[n].device) for n, t in extra["mask_frozen"].items()}
            self._attach_mask(mask)
