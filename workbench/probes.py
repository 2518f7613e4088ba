"""Probes: callbacks that measure a run every ``every`` steps and log into its history.

A probe subclasses :class:`Probe` and implements ``measure(run) -> dict``: values are floats (scalar
rows) or ``xr.DataArray`` (per-matrix or spectra arrays). The base class decides *when* (step 0 before
training if ``at_start``, then every ``every`` steps) and logs what ``measure`` returns, so a probe
never touches the history or a view.

Probes live in ``PROBES`` by name; :func:`create` builds one by name (``run.add_probe("spectra",
every=10)`` does the same), importing the workbench subpackages that register probes on first use.
Probes run at their events after the other callbacks (``order = 100``, see :mod:`workbench.events`), so
they measure the weights a mask or SAM callback left. Under ``strategy="fsdp"`` a probe measures inside
:func:`workbench.fsdp.full_weights` (the full, gathered weights), which every rank enters together: attach
the same probes on every rank there (the CLI does).

>>> sorted(n for n in names() if n in ("delta", "eval_loss", "spectra"))
['delta', 'eval_loss', 'spectra']
>>> create("spectra", every=25).every
25
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import weakref

import param
import torch
import xarray as xr

from .data.base import Split, to_device
from .display import Displayable
from .errors import ConfigError
from .events import PROBE_ORDER
from .fsdp import full_weights
from .registry import Registry

PROBES = Registry("probe", hint="Build one with workbench.probes.create(name, **params).")


def _import_probe_modules() -> None:
    """Import every workbench subpackage, so the probes they register are in ``PROBES``."""
    import workbench

    for module in pkgutil.iter_modules(workbench.__path__):
        if module.ispkg and module.name not in ("data", "models"):
            importlib.import_module(f"workbench.{module.name}")


def names() -> list[str]:
    """Every registered probe name (all of the workbench's probes, not only those imported so far)."""
    _import_probe_modules()
    return PROBES.names()


def create(name: str, **params) -> "Probe":
    """The probe registered as ``name``, built with ``params`` (``create("spectra", every=10, k=5)``)."""
    if name not in PROBES:
        _import_probe_modules()
    cls = PROBES.get(name)
    try:
        return cls(**params)
    except TypeError as exc:  # a missing or unknown constructor argument
        raise _bad_arguments(name, cls, exc) from None
    except ValueError as exc:  # param's own check of a value
        if isinstance(exc, ConfigError):
            raise
        raise _bad_arguments(name, cls, exc) from None


def _bad_arguments(name: str, cls, exc: Exception) -> ConfigError:
    settable = ", ".join(p for p in cls.param if p != "name")
    return ConfigError(f"Cannot build the probe {name!r} with those arguments ({exc}). Its parameters are: {settable}.")


class Probe(Displayable, param.Parameterized):
    """Base class: schedule and logging; subclasses implement ``measure``.

    Public state for views: ``probe.run`` (the run it is attached to, held weakly; None before
    ``attach``) and ``probe.logged_names`` (every history name it has logged so far, in first-logged
    order), so a view can show one panel per probe. Displaying a probe in a notebook shows that panel.
    """

    every = param.Integer(default=50, bounds=(1, None), doc="Measure every this many optimizer steps.")
    at_start = param.Boolean(default=True, doc="Also measure once before the first step (step 0).")

    #: callback order at each event (lower runs first): after masks, SAM and other order-0 callbacks
    order = PROBE_ORDER

    def __init__(self, **params):
        super().__init__(**params)
        self._last_measured: int | None = None
        self._run_ref = None
        #: the history names this probe has logged (scalars and arrays), in first-logged order
        self.logged_names: tuple[str, ...] = ()

    @property
    def run(self):
        """The run this probe is attached to (or None): a weak reference, so a probe never keeps a run alive."""
        return self._run_ref() if self._run_ref is not None else None

    def attach(self, run) -> "Probe":
        """Attach to ``run``'s events (``run.add_probe`` calls this)."""
        self._run_ref = weakref.ref(run)
        run.callbacks.add("before_step", self._before_step, name=f"{type(self).__name__}.at_start", order=self.order)
        run.callbacks.add("after_step", self._after_step, name=f"{type(self).__name__}(every={self.every})",
                          order=self.order)
        with full_weights(run.model):
            self.setup(run)
        return self

    def setup(self, run) -> None:
        """Prepare (cache reference quantities); called once when attached."""

    def _before_step(self, run, **_):
        # The step-0 measurement: before the very first optimizer step, whoever drives the run.
        if self.at_start and run.global_step == 0 and self._last_measured is None:
            self.record(run)

    def _after_step(self, run, **_):
        if run.global_step % self.every == 0:
            self.record(run)

    def record(self, run) -> dict:
        """Measure now and log the results at the run's current step."""
        step = run.global_step
        with full_weights(run.model):  # under FSDP: the gathered weights (every rank measures; rank 0 writes)
            results = self.measure(run)
        # named before they reach the history, so a view polling from another thread never sees an unclaimed name
        self.logged_names = tuple(dict.fromkeys((*self.logged_names, *results)))
        scalars = {}
        for name, value in results.items():
            if isinstance(value, xr.DataArray):
                run.history.log_array(step, name, value)
            else:
                scalars[name] = value
        if scalars:
            run.history.log(step, **scalars)
        self._last_measured = step
        return results

    def measure(self, run) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


@PROBES.register("eval_loss", help="mean loss on held-out splits")
class EvalLoss(Probe):
    """Mean loss of the model on each held-out split, logged as ``<name>_loss`` (eval mode, no grad).

    ``splits`` maps a label to a :class:`Split` (e.g. ``{"val": …, "pretrain": …}``; the second is the
    forgetting measure in fine-tuning). At most ``max_batches`` batches of ``batch_size`` are used, in
    order, so the measurement is the same at every step.
    """

    max_batches = param.Integer(default=4, bounds=(1, None), doc="Batches per split per measurement.")
    batch_size = param.Integer(default=32, bounds=(1, None), doc="Evaluation batch size.")

    def __init__(self, splits: dict[str, Split], loss_fn=None, **params):
        super().__init__(**params)
        self.splits = dict(splits)
        self.loss_fn = loss_fn

    @torch.no_grad()
    def measure(self, run) -> dict:
        model = run.model
        was_training = model.training
        model.eval()
        loss_fn = self.loss_fn or run.data.loss
        out = {}
        try:
            for label, split in self.splits.items():
                total, count = 0.0, 0
                for batch in split.batches(self.batch_size, limit=self.max_batches):
                    batch = to_device(batch, run.torch_device)
                    with run.autocast_ctx():
                        loss, _ = loss_fn(model, batch)
                    n = len(next(iter(batch.values())))
                    total += float(loss) * n
                    count += n
                out[f"{label}_loss"] = total / count if count else math.nan
        finally:
            model.train(was_training)
        return out
