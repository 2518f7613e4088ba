"""What a fine-tuning method is: its own parameters, a ``check`` that refuses bad settings before the model
is touched, a ``build`` that wraps the model (through PEFT), and optional hooks into the training loop.

A method is a ``param.Parameterized`` class registered in :data:`METHODS`, one file each (the shape of
PEFT's own tuner registry). Its declared parameters (``n_frequency``, ``variant``, ``target_r`` …) are
what ``FineTune(method="fourierft", n_frequency=200)`` routes to and what ``run.method_params`` shows;
the stage's shared settings (``rank``, ``alpha``, ``dropout``, ``target_modules``, ``init`` …) are read
from the stage, and :attr:`Method.uses` lists the ones a method reads.

>>> from workbench.finetune.methods import METHODS
>>> m = METHODS.get("fourierft").checked(n_frequency=64)
>>> m.n_frequency, sorted(m.hyperparameters())
(64, ['fourier_scaling', 'n_frequency', 'random_loc_seed', 'zero_init'])
>>> METHODS.get("fourierft").checked(n_frequency=0)        # doctest: +ELLIPSIS
Traceback (most recent call last):
...
workbench.errors.ConfigError: n_frequency=0 is not valid for fine-tuning method 'fourierft': ...
"""

from __future__ import annotations

import param
from torch import nn

from ...errors import ConfigError
from ...registry import Registry
from .. import adapters

METHODS = Registry("fine-tuning method", hint="Methods live in workbench/finetune/methods/, one file each; "
                                              "pass one as FineTune(method=...).")


class Method(param.Parameterized):
    """Base class of a fine-tuning method; subclasses declare their own parameters and implement ``build``."""

    #: stage parameters this method reads (the others are ignored for it).
    uses: tuple[str, ...] = ("target_modules",)
    #: works on GPT-2's ``Conv1D`` layers in PEFT 0.21.2.
    conv1d = True
    #: substrings of the names of the parameters it trains (what tests and the optimizer variants check).
    trainable_markers: tuple[str, ...] = ()

    @classmethod
    def key(cls) -> str:
        """The name this class is registered under (``""`` if none)."""
        return next((n for n in METHODS.names() if METHODS.get(n) is cls), "")

    @classmethod
    def hyperparameter_names(cls) -> list[str]:
        return [k for k in cls.param if k != "name"]

    @classmethod
    def checked(cls, **values) -> "Method":
        """An instance with ``values``; an unknown name or a bad value raises :class:`ConfigError`."""
        owner = f"fine-tuning method {cls.key() or cls.__name__!r}"
        known = cls.hyperparameter_names()
        for k, v in values.items():
            if k not in known:
                raise ConfigError(f"{k!r} is not a parameter of {owner}; its parameters are {known or '(none)'}. "
                                  "Remove it or pick a method that has it.")
            p = cls.param[k]
            try:
                cls(**{k: v})  # param checks type and bounds
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{k}={v!r} is not valid for {owner}: {exc} ({k}: {p.doc}) "
                                  f"Pass e.g. {k}={p.default!r}.") from None
        return cls(name=cls.key() or cls.__name__, **values)

    def hyperparameters(self) -> dict:
        """The method's own parameters and their values (JSON-able; what records and papermill store)."""
        return {k: getattr(self, k) for k in self.hyperparameter_names()}

    # ------------------------------------------------------------------ the contract
    def check(self, stage, model: nn.Module) -> dict[str, nn.Module]:
        """Validate the setting against ``model`` and return the targeted modules; modifies nothing."""
        adapters.check_base(model)
        targets = adapters.resolve_targets(model, stage.target_modules)
        if not self.conv1d and any(adapters.is_conv1d(m) for m in targets.values()):
            raise ConfigError(f"{type(self).__name__} does not support GPT-2's Conv1D layers in PEFT 0.21.2 (PEFT "
                              f"accepts only torch.nn.Linear for {self.key()!r}); use a Llama-style base such as "
                              "'llama-1m', or another method.")
        return targets

    def build(self, stage, model: nn.Module, targets: dict[str, nn.Module], batches: list[dict]) -> nn.Module:
        """Wrap ``model`` for training (called after :meth:`check`, under the stage's seed)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def attach(self, run) -> None:
        """Hook into the training loop (``run.add_callback``/``add_probe``) once the model is built."""

    def scaling(self, stage) -> float:
        """The adapter's output scale (1.0 where the method has none)."""
        return 1.0

    def extra_state(self, run) -> dict:
        """State outside the model and optimizer that a bit-identical resume needs (e.g. AdaLoRA's budget)."""
        return {}

    def load_extra_state(self, run, state: dict) -> None:
        """Restore :meth:`extra_state` output."""


def check_positive_rank(rank, what: str = "rank") -> None:
    if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
        raise ConfigError(f"{what} must be a positive integer, got {rank!r}.")


def peft_wrap(model: nn.Module, config) -> nn.Module:
    """``peft.get_peft_model`` (PEFT's own layers); every non-adapter weight frozen by PEFT."""
    return adapters.peft_model(model, config)
