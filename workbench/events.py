"""Named callback events of a stage, and ``show_loop()`` to see who is attached where.

The fixed list (fastai-style names). Each callback is called as ``fn(run, **context)``:

==============  ================================================  ==========================
event           when                                              context
==============  ================================================  ==========================
before_run      ``run()``/``start()`` begins, before the first    ``target`` (final step)
                step of that call
before_step     a batch is on the device, before the forward      ``batch``
after_loss      the loss is computed, before backward             ``loss`` (tensor)
after_backward  gradients are in ``.grad``, before clipping and   —
                the optimizer step (masks, SAM, …)
after_step      the optimizer stepped; ``run.global_step`` is     ``metrics`` (dict)
                the new step count
after_cancel    ``stop()`` ended a ``run()`` at a step boundary   —
after_diverge   the loss or gradient became NaN/inf               ``what``, ``value``
after_run       a ``run()`` call ends (finished or cancelled)     ``status``
==============  ================================================  ==========================

Order: at each event, callbacks run by ascending ``order`` (ties in the order they were attached), as
fastai's ``Callback.order``. Probes default to ``order=100`` (:data:`PROBE_ORDER`), everything else to 0,
so a weight mask or a SAM step attached *after* the probes still runs before them, and probes measure
what the step produced. ``show_loop()`` prints each callback with its order.

>>> cbs = Callbacks()
>>> _ = cbs.add("after_step", print, name="probe", order=100)
>>> _ = cbs.add("after_step", print, name="mask", order=10)
>>> [cb.name for cb in cbs.attached("after_step")]
['mask', 'probe']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import ConfigError

#: the default order of probes (callbacks that only measure); lower runs first
PROBE_ORDER = 100

EVENTS = ("before_run", "before_step", "after_loss", "after_backward", "after_step", "after_cancel",
          "after_diverge", "after_run")


@dataclass
class Callback:
    """One attached callable, with the name shown by ``show_loop`` and its ``order`` (lower runs first)."""

    event: str
    fn: Callable
    name: str
    order: float = 0


class Callbacks:
    """Callbacks by event; attach with ``add``, detach with ``remove``, fire with ``trigger``."""

    def __init__(self):
        self._by_event: dict[str, list[Callback]] = {e: [] for e in EVENTS}

    def add(self, event: str, fn: Callable, name: str | None = None, order: float = 0) -> Callback:
        """Attach ``fn`` at ``event``; it runs after every callback of lower ``order`` (and of equal order attached earlier)."""
        if event not in self._by_event:
            raise ConfigError(f"Unknown event {event!r}; events are {', '.join(EVENTS)}.")
        if not callable(fn):
            raise ConfigError(f"The callback for {event!r} must be callable, got {type(fn).__name__}.")
        if isinstance(order, bool) or not isinstance(order, (int, float)) or order != order:
            raise ConfigError(f"The order of a callback must be a number (lower runs first; probes use "
                              f"{PROBE_ORDER}), got {order!r}.")
        cb = Callback(event, fn, name or getattr(fn, "__qualname__", repr(fn)), order)
        cbs = self._by_event[event]
        at = len(cbs)
        while at and cbs[at - 1].order > order:  # stable: after every callback of the same order
            at -= 1
        self._by_event[event] = cbs[:at] + [cb] + cbs[at:]  # a new list: a trigger in progress is unaffected
        return cb

    def remove(self, target) -> int:
        """Detach callbacks matching a ``Callback``, a function, a name or an owner object; returns the count."""
        removed = 0
        for event, cbs in self._by_event.items():
            keep = []
            for cb in cbs:
                owner = getattr(cb.fn, "__self__", None)
                if cb is target or cb.fn == target or cb.name == target or (owner is not None and owner is target):
                    removed += 1
                else:
                    keep.append(cb)
            self._by_event[event] = keep
        return removed

    def trigger(self, event: str, run, **context) -> None:
        for cb in self._by_event[event]:
            cb.fn(run, **context)

    def attached(self, event: str) -> list[Callback]:
        return list(self._by_event[event])

    def show(self) -> str:
        """The training loop as text: at each event, the attached callbacks in the order they run, ``name [order]``."""
        lines = []
        for event in EVENTS:
            names = [f"{cb.name} [{cb.order:g}]" for cb in self._by_event[event]]
            lines.append(f"{event:<15} " + (", ".join(names) if names else "-"))
        return "\n".join(lines)
