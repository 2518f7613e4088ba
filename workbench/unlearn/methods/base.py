"""What an unlearning method is: a forget term (what SAM sharpens), an optional retain term, and its own
hyperparameters.

A method is a ``param.Parameterized`` class registered in :data:`METHODS` (one file each, PEFT's
registry shape: the method *owns* its configuration). Its declared parameters (``beta``,
``retain_weight``, ``delta`` …, with bounds) are what the stage shows as ``unlearn.method_params``, what
papermill and the record see, and what ``Unlearn(method="npo", beta=0.1)`` routes to. ``terms(stage,
forget, retain)`` returns :class:`Terms`; the stage adds them (``forget + retain``), or, with SAM,
evaluates the forget term at the perturbed weights and the retain term at the current ones. A method
reads the models from the stage (``stage.model``, ``stage.reference_model``) and its numbers from itself.

Flags the stage checks before anything runs: ``needs_reference`` (a frozen π_ref copy is made only for
methods that set it), ``needs_retain()`` (a retain set must be given), ``needs_refusal`` /
``needs_alternate`` (the forget batch must carry ``refusal_*`` / ``alternate_*`` tensors).

Adding a method with a hyperparameter is one file::

    @METHODS.register("my_method", help="…")
    class MyMethod(WithRetain):             # or Method, if it has no retain term
        gamma = param.Number(default=1.0, bounds=(0, None), doc="…")
        def forget_term(self, stage, forget):
            logp, _ = sequence_logprob(stage.model, forget)
            return self.gamma * logp.mean(), {}

>>> npo = METHODS.get("npo")(beta=0.5)
>>> npo.beta, npo.needs_reference, sorted(npo.hyperparameters())
(0.5, True, ['beta', 'retain_weight'])
>>> try:
...     METHODS.get("npo").checked(beta="abc")
... except ConfigError as err:
...     print(str(err).split(":")[0])
beta='abc' is not valid for unlearning method 'npo'
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import param
import torch

from ...errors import ConfigError
from ...registry import Registry

METHODS = Registry("unlearning method", hint="Methods live in workbench/unlearn/methods/, one file each.")


@dataclass
class Terms:
    """The loss of one step split in two: ``forget`` (on forget data) and ``retain`` (or ``None``)."""

    forget: torch.Tensor
    retain: torch.Tensor | None = None
    metrics: dict = field(default_factory=dict)

    @property
    def total(self) -> torch.Tensor:
        return self.forget if self.retain is None else self.forget + self.retain


def check_value(owner: str, name: str, p: param.Parameter, value) -> None:
    """Refuse a value a declared parameter cannot take (non-numeric, NaN/inf, out of bounds, not an option),
    with a message that says what the parameter is and how to fix it. Nothing is set."""
    doc = f" ({name}: {p.doc.rstrip('.')})" if p.doc else ""
    if isinstance(p, param.Number):  # Integer is a Number
        integer = isinstance(p, param.Integer)
        ok_type = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
        if value is None and p.allow_None:
            return
        if not ok_type or not math.isfinite(float(value)):
            kind = "a whole number" if integer else "a real number"
            raise ConfigError(f"{name}={value!r} is not valid for {owner}: it must be {kind}, finite (not NaN or "
                              f"inf){doc}. Pass e.g. {name}={p.default!r}.")
        lo, hi = p.bounds or (None, None)
        inc_lo, inc_hi = p.inclusive_bounds
        if (lo is not None and (value < lo or (value == lo and not inc_lo))) or \
           (hi is not None and (value > hi or (value == hi and not inc_hi))):
            rng = f"{'[' if inc_lo else '('}{'-∞' if lo is None else lo}, {'∞' if hi is None else hi}{']' if inc_hi else ')'}"
            raise ConfigError(f"{name}={value!r} is out of range for {owner}: it must lie in {rng}{doc}. "
                              f"Pass e.g. {name}={p.default!r}.")
    elif isinstance(p, param.Selector) and p.check_on_set and value not in p.objects:
        raise ConfigError(f"{name}={value!r} is not an option for {owner}; use one of {list(p.objects)}{doc}.")


class Method(param.Parameterized):
    """Base class; subclasses implement ``forget_term`` and declare their hyperparameters as params."""

    needs_reference = False
    needs_refusal = False
    needs_alternate = False
    formula = ""

    @classmethod
    def key(cls) -> str:
        """The name this class is registered under in :data:`METHODS` (``""`` if it is not registered)."""
        return next((n for n in METHODS.names() if METHODS.get(n) is cls), "")

    @classmethod
    def checked(cls, **values) -> "Method":
        """An instance with ``values``, every one validated first (unknown names and bad values raise
        :class:`ConfigError` naming the method's parameters)."""
        owner = f"unlearning method {cls.key() or cls.__name__!r}"
        known = cls.hyperparameter_names()
        for k, v in values.items():
            if k not in known:
                raise ConfigError(f"{k!r} is not a parameter of {owner}; its parameters are "
                                  f"{known or '(none)'}. Remove it or pick a method that has it.")
            check_value(owner, k, cls.param[k], v)
        return cls(name=cls.key() or cls.__name__, **values)

    @classmethod
    def hyperparameter_names(cls) -> list[str]:
        return [k for k in cls.param if k != "name"]

    def hyperparameters(self) -> dict:
        """The method's declared parameters and their values (what records and papermill store)."""
        return {k: getattr(self, k) for k in self.hyperparameter_names()}

    def validate(self) -> None:
        """Re-check the current values (called by the stage before training; values can be edited live)."""
        owner = f"unlearning method {self.key() or type(self).__name__!r}"
        for k, v in self.hyperparameters().items():
            check_value(owner, k, self.param[k], v)

    def needs_retain(self) -> bool:
        """Whether a retain batch is used (methods with a ``retain_weight · NLL_retain`` term)."""
        return False

    def forget_term(self, stage, forget: dict) -> tuple[torch.Tensor, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def retain_term(self, stage, retain: dict) -> tuple[torch.Tensor, dict]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no retain term.")

    def terms(self, stage, forget: dict, retain: dict | None) -> Terms:
        f, metrics = self.forget_term(stage, forget)
        r = None
        if retain is not None and self.needs_retain():
            r, m = self.retain_term(stage, retain)
            metrics.update(m)
        return Terms(f, r, metrics)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class WithRetain(Method):
    """A method with the usual retain term ``retain_weight · NLL_retain`` (off at ``retain_weight = 0``)."""

    retain_weight = param.Number(default=1.0, bounds=(0, None),
                                 doc="Weight λ of the retain term λ·NLL_retain (mean token CE on retain answers); 0 = off.")

    def needs_retain(self) -> bool:
        return self.retain_weight > 0

    def retain_term(self, stage, retain: dict) -> tuple[torch.Tensor, dict]:
        """``retain_weight · mean token NLL`` on retain answers (GradDiff's and NPO+RT's retain term)."""
        from ..losses import mean_token_nll

        nll = mean_token_nll(stage.model, retain)
        return self.retain_weight * nll, {"retain_nll": float(nll.detach())}
