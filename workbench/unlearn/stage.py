"""The unlearning stage: a :class:`workbench.Run` whose step is an unlearning method's step.

>>> from workbench.unlearn import Unlearn, FactsBenchmark                            # doctest: +SKIP
>>> bench = FactsBenchmark(40)                                                       # doctest: +SKIP
>>> run = Unlearn(target, bench.split("forget"), bench.split("retain"), method="npo", beta=0.1,
...               retain_weight=1.0, sam_rho=0.01, max_steps=50)                     # doctest: +SKIP
>>> run.method_params                    # NPO(retain_weight=1.0, beta=0.1): the method owns its parameters  # doctest: +SKIP
>>> run.run()                                                                        # doctest: +SKIP

Each step draws a forget batch (the run's ``train`` split, batch ``i`` a pure function of the seed) and,
when the method uses one, a retain batch from the retain split (seed + 1, same step index). The method
object (``run.method_params``, an instance of ``METHODS[method]``: a ``param.Parameterized`` with the
method's own hyperparameters, shown by views as a sub-panel) returns a forget term and a retain term;
the stage backpropagates them plainly or with SAM (``sam_rho > 0``: the forget term is taken at the
sharpness-perturbed weights). Keyword arguments that are not the stage's own parameters are routed to
the method (``Unlearn(method="npo", beta=0.1)``) and validated there; one that neither has is refused.
Changing ``method`` later swaps in a fresh method object with its defaults. Options:

* ``mask_fraction`` > 0: WAGLE weight attribution — only the top fraction of weights by
  |(θ − ∇ℓ_retain/μ) ⊙ ∇ℓ_forget| (computed once, at setup) may change (see :mod:`.wagle`);
* ``lora_rank`` > 0: unlearn through a PEFT LoRA adapter built by the fine-tuning lab's
  :mod:`workbench.finetune.adapters` (``check`` then ``build``: its default targets, every attention and
  MLP projection, never the LM head; α = 2r); read at construction.

The frozen reference π_ref (``run.reference_model``) is a deep copy of the model made at construction,
in eval mode with ``requires_grad=False``, **only for methods that use it** (``needs_reference``: NPO,
RMU, DPO, IdkDPO); for GA, GradDiff, SimNPO, FLAT and WGA it is ``None`` and no copy exists
(``run.reference_bytes`` says what a copy costs). Nothing in the stage writes to it.

**Data parallel** (``strategy="ddp"``, launched by ``torchrun``; :mod:`workbench.run_parallel`): the forget batch
``i`` and the retain batch ``i`` are drawn whole, as in one process, and rank ``r`` of ``W`` takes rows ``r::W`` of
each; every rank holds its own π_ref (a copy of rank 0's weights) and scores the same WAGLE mask. The step's
several passes (forget, retain, SAM's perturbed forget pass) run on the plain model and the gradients are
averaged over the ranks once per step; under SAM the forget gradient that sets the perturbation ε* is averaged
first, so every rank perturbs by the global batch's ε*. Terms that average per example (GA, NPO, SimNPO, DPO,
FLAT) then match one process with the same global batch up to rounding; token means (the retain NLL, RMU,
WGA) weight the ranks by examples, not tokens (exact when shards have equal answer lengths), as gradient
accumulation does (:mod:`workbench.accumulate`). ``strategy="fsdp"`` is refused (frozen copies and several
passes of the full model). Evaluations (``UnlearnProbe``, :func:`evaluate`) are best run on rank 0 only.

The WAGLE mask's callbacks are attached with ``order=MASK_ORDER`` (before probes, whose default order
is 100), so probes measure the weights after the mask restored them.

Every check on the arguments (unknown method, a bad method parameter such as β ≤ 0 or ``mu="abc"``,
empty or overlapping forget/retain sets, a method that needs a retain set, refusals or alternate
answers it does not have, a LoRA setting the adapter code refuses) runs before the model is touched.
"""

from __future__ import annotations

import copy

import param
import torch
from torch import nn

from .. import distributed
from ..data.base import Dataset, Split, to_device
from ..errors import ConfigError
from ..run import Run
from .methods import METHODS, Method
from .methods.base import check_value
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



def _model_bytes(model: nn.Module | None) -> int:
    """Bytes of a model's parameters and buffers (what a deep copy of it holds)."""
    if model is None:
        return 0
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


class Unlearn(Run):
    """Unlearn ``forget`` from ``model`` while keeping ``retain``.

    Parameters
    ----------
    model : the target model (``nn.Module``, a preset name or a model directory). Trained in place, as in
        every Run (with ``lora_rank > 0`` PEFT also injects its adapters into it): pass
        ``copy.deepcopy(target)`` to keep the target.
    forget : :class:`Split` (or dict of tensors) of forget examples; ``labels`` -100 outside the answers.
    retain : :class:`Split` of retain examples (needed by methods with ``retain_weight > 0``, RMU and the
        WAGLE mask); must not share facts (``fact_id``) or rows with ``forget``.
    reference_model : π_ref; by default a deep copy of ``model`` made here (after LoRA wrapping), only if
        the method uses one.
    method_params : the method's parameters as a dict or a ``Method`` object (or pass them as keywords).
    **params : declared parameters below, every :class:`workbench.Run` parameter, and the method's own.
    """

    method = param.Selector(default="npo", objects=METHODS.names(), check_on_set=False,
                            doc="Unlearning method (METHODS registry; methods registered later are accepted too).")
    method_params = param.ClassSelector(class_=Method, default=None, allow_None=True, instantiate=False,
                                        doc="The chosen method and its own hyperparameters (a Method object).")
    sam_rho = param.Number(default=0.0, bounds=(0, None), doc="SAM radius ρ on the forget term (0 = off).")
    mask_fraction = param.Number(default=0.0, bounds=(0, 1), doc="WAGLE: fraction of weights allowed to change (0 = all).")
    mu = param.Number(default=1.0, bounds=(0, None), inclusive_bounds=(False, True),
                      doc="WAGLE: μ > 0 in |(θ − ∇ℓ_retain/μ) ⊙ ∇ℓ_forget|.")
    mask_batches = param.Integer(default=2, bounds=(1, None), doc="WAGLE: batches used to score the weights.")
    lora_rank = param.Integer(default=0, bounds=(0, None), doc="LoRA rank (0 = full parameters); read at construction.")
    lr = param.Number(default=1e-4, bounds=(0, None), inclusive_bounds=(False, True), doc="Peak learning rate (> 0).")
    batch_size = param.Integer(default=8, bounds=(1, None), doc="Forget (and retain) examples per step.")
    max_steps = param.Integer(default=50, bounds=(1, None), doc="Unlearning steps of run().")
    eval_every = param.Integer(default=0, bounds=(0, None), doc="Held-out loss every N steps (0 = off; use UnlearnProbe).")

    #: order of the WAGLE mask's callbacks: before probes (default order 100) and default callbacks (0)
    MASK_ORDER = -10
    #: under ddp, the step's passes run on the plain model; gradients are averaged after it (module docstring)
    AVERAGES_GRADIENTS_AFTER_STEP = True

    def __init__(self, model, forget, retain=None, probes=(), reference_model: nn.Module | None = None, **params):
        forget = _as_split(forget, "forget")
        retain = _as_split(retain, "retain")
        params, method = self._method_from(params)
        self._check_data(method, forget, retain, params.get("mask_fraction", type(self).param["mask_fraction"].default))
        super().__init__(model, Dataset("unlearn-forget", {"train": forget}, task="lm"), probes=(),
                         method_params=method, **params)
        self.retain = retain
        if self.lora_rank > 0:
            self.model = self._with_lora(self.model, self.lora_rank)
        if reference_model is None and method.needs_reference:
            reference_model = copy.deepcopy(self.model)
        self.reference_model = reference_model.eval().requires_grad_(False) if reference_model is not None else None
        self.weight_mask: WeightMask | None = None
        for probe in probes:
            self.add_probe(probe)

    # ------------------------------------------------------------------ validation (nothing modified yet)
    @classmethod
    def _method_from(cls, params: dict) -> tuple[dict, Method]:
        """Split ``params`` into the stage's and the method's; validate both; build the method object."""
        params = dict(params)
        name = params.get("method", cls.param["method"].default)
        mcls = METHODS.entry(name).obj  # NotFoundError with close matches for an unknown name
        given = params.pop("method_params", None)
        routed = {k: params.pop(k) for k in list(params) if k not in cls.param}
        for k, v in params.items():
            if k != "method" and k not in cls.STATE_PARAMS:
                check_value("Unlearn", k, cls.param[k], v)
        for k in routed:
            if k not in mcls.hyperparameter_names():
                having = [n for n in METHODS.names() if k in getattr(METHODS.get(n), "param", {})]
                raise ConfigError(f"Unlearn got {k}={routed[k]!r}, which is neither a stage parameter nor a parameter of "
                                  f"method {name!r} (its parameters: {mcls.hyperparameter_names() or 'none'}). Remove it"
                                  + (f", or use a method that has it: {having}." if having else "."))
        if isinstance(given, Method):
            if not isinstance(given, mcls):
                raise ConfigError(f"method_params is a {type(given).__name__} but method={name!r}; pass a "
                                  f"{mcls.__name__} or a dict of its parameters.")
            if routed:
                raise ConfigError(f"Pass the method's parameters either as method_params or as keywords, not both "
                                  f"(got method_params and {sorted(routed)}).")
            given.validate()
            return params, given
        if given is not None and not isinstance(given, dict):
            raise ConfigError(f"method_params must be a dict of the method's parameters or a Method, got {type(given).__name__}.")
        return params, mcls.checked(**{**(given or {}), **routed})

    def _check_data(self, method: Method, forget: Split | None, retain: Split | None, mask_fraction: float) -> None:
        name = method.key() or type(method).__name__
        if forget is None:
            raise ConfigError("Unlearn needs a forget set (a Split of the examples to forget), got None.")
        if len(forget) == 0:
            raise ConfigError("The forget set is empty: give it at least one example.")
        if (method.needs_retain() or mask_fraction > 0) and retain is None:
            raise ConfigError(f"Method {name!r} with {method.hyperparameters()} and mask_fraction={mask_fraction} needs a "
                              "retain set: pass retain=bench.split('retain').")
        for flag, kind in (("needs_refusal", "refusal"), ("needs_alternate", "alternate")):
            if getattr(method, flag) and f"{kind}_input_ids" not in forget.tensors:
                raise ConfigError(f"Method {name!r} needs {kind} answers in the forget split ({kind}_input_ids …); "
                                  "build it with bench.split('forget') (with_refusal=True).")
        if retain is not None:
            common = _row_keys(forget) & _row_keys(retain)
            if common:
                what = "facts (fact_id)" if "fact_id" in forget.tensors else "examples"
                raise ConfigError(f"The forget and retain sets overlap in {len(common)} {what}, e.g. "
                                  f"{sorted(common)[:5] if what.startswith('facts') else '(token rows)'}; an example "
                                  "cannot be both forgotten and kept. Build them from the same forget_fraction.")

    @staticmethod
    def _with_lora(model: nn.Module, rank: int) -> nn.Module:
        """The fine-tuning lab's LoRA (:mod:`workbench.finetune.adapters`): checked, then built; α = 2r."""
        from ..finetune import adapters

        targets = adapters.check(model, "lora", rank, 2 * rank, None, "default")  # raises before any change
        origin = getattr(model, "workbench_origin", None)
        wrapped = adapters.build(model, "lora", targets, rank, 2 * rank, "default")
        if origin is not None:
            wrapped.workbench_origin = origin
        return wrapped

    @param.depends("method", watch=True)
    def _method_changed(self) -> None:
        """A new ``method`` name gets a fresh method object with its defaults (checked at the next setup)."""
        if not isinstance(self.method_params, METHODS.get(self.method)):
            self.method_params = METHODS.get(self.method).checked()

    @property
    def reference_bytes(self) -> int:
        """Bytes held by π_ref's parameters and buffers (0 when the method needs no reference: no copy)."""
        return _model_bytes(self.reference_model)

    def config_values(self, config: dict) -> dict:
        """A saved config's ``method_params`` dict becomes the method object again (validated)."""
        values = super().config_values(config)
        if isinstance(values.get("method_params"), dict):
            name = values.get("method", self.method)
            if name not in METHODS:
                raise ConfigError(f"Unknown unlearning method {name!r}; known: {', '.join(METHODS.names())}.")
            values["method_params"] = METHODS.get(name).checked(**values["method_params"])
        return values

    def config(self) -> dict:
        """Declared parameters, with the method's own as a dict under ``method_params`` (JSON-able)."""
        cfg = super().config()
        cfg["method_params"] = self.method_params.hyperparameters()
        return cfg

    # ------------------------------------------------------------------ setup
    def setup(self) -> "Unlearn":
        method = self.method_params
        if not isinstance(method, METHODS.get(self.method)):
            raise ConfigError(f"method_params is a {type(method).__name__} but method={self.method!r}; set method_params "
                              f"to {METHODS.get(self.method).__name__}(...) or change method.")
        method.validate()
        self._check_data(method, self.data.train, self.retain, self.mask_fraction)
        super().setup()
        if self.reference_model is None and method.needs_reference:
            if self.global_step > 0:
                raise ConfigError(f"Method {self.method!r} needs π_ref, the model before unlearning, but this run was built "
                                  f"without one and has taken {self.global_step} steps. Build a new Unlearn with "
                                  f"method={self.method!r}, or pass reference_model=.")
            self.reference_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        elif self.reference_model is not None:
            self.reference_model.to(self.torch_device)  # a no-op once there; loading a state may have moved the run
        if self.mask_fraction > 0 and self.weight_mask is None:
            self._build_mask()
        return self

    def modules_to_broadcast(self) -> list[nn.Module]:
        """The model and π_ref: every rank starts from rank 0's copies (data parallel)."""
        return [*super().modules_to_broadcast(), *([self.reference_model] if self.reference_model is not None else [])]

    def _build_mask(self) -> None:
        named = named_trainable(self.model)
        retain_n = min(len(self.retain), self.batch_size * self.mask_batches)
        forget_n = min(len(self.data.train), self.batch_size * self.mask_batches)
        fb = to_device(self.data.train.take(range(forget_n)), self.torch_device)
        rb = to_device(self.retain.take(range(retain_n)), self.torch_device)
        from .losses import mean_token_nll

        method = self.method_params
        scores = attribution_scores(named, lambda: method.forget_term(self, fb)[0],
                                    lambda: mean_token_nll(self.model, rb), self.mu)
        self._attach_mask(WeightMask(named, top_fraction_mask(scores, self.mask_fraction)))

    def _attach_mask(self, mask: WeightMask) -> None:
        if self.weight_mask is not None:
            self.callbacks.remove(self.weight_mask)
        self.weight_mask = mask.attach(self, order=self.MASK_ORDER)

    # ------------------------------------------------------------------ one step
    def _retain_batch(self) -> dict | None:
        if self.retain is None or not self.method_params.needs_retain():
            return None
        batch = self.retain.batch_at(self.global_step, self.batch_size, self.seed + 1)  # the global retain batch
        if self.strategy != "single":
            batch = distributed.shard(batch)  # this rank's rows r::world, as the forget batch
        return to_device(batch, self.torch_device)

    def forward_backward(self, batch: dict):
        """Forget term (plainly or with SAM), then retain term; gradients left in ``.grad``."""
        method = self.method_params
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
            average = distributed.average if self.strategy != "single" else None  # ε* from the global gradient
            terms = sam_backward(checked_forget, retain_fn, params, self.sam_rho, average=average)
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

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The Run's state plus π_ref (if any) and the WAGLE mask: a resumed run must not re-copy or re-score them."""
        state = super().state_dict()
        extra = {"reference_model": None if self.reference_model is None else
                 {k: v.cpu() for k, v in self.reference_model.state_dict().items()}}
        if self.weight_mask is not None:
            extra["mask"] = {n: m.cpu() for n, m in self.weight_mask.masks.items()}
            extra["mask_frozen"] = {n: t.cpu() for n, t in self.weight_mask.frozen.items()}
        state["unlearn"] = extra
        return state

    def load_state_dict(self, state: dict) -> None:
        from ..run_state import check_model, damaged

        extra = state.get("unlearn", {})  # checked before anything changes; then Run checks and applies its own
        if not isinstance(extra, dict):
            raise damaged("unlearn", "expected a dict")
        if extra.get("reference_model") is not None:
            check_model(self.reference_model if self.reference_model is not None else self.model, extra["reference_model"])
        if "mask" in extra and not set(extra["mask"]) <= set(named_trainable(self.model)):
            raise damaged("unlearn", "its mask names weights this model does not train")
        super().load_state_dict(state)
        if extra.get("reference_model") is not None:
            if self.reference_model is None:  # built for a method without π_ref: give it one of the right shape
                self.reference_model = copy.deepcopy(self.model).eval().requires_grad_(False)
            self.reference_model.load_state_dict(extra["reference_model"])
        if "mask" in extra:
            named = named_trainable(self.model)  # (a set-up during loading scored the loaded weights: replaced here)
            mask = WeightMask(named, extra["mask"])
            mask.frozen = {n: t.to(named[n].device) for n, t in extra["mask_frozen"].items()}
            self._attach_mask(mask)
