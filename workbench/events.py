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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import ConfigError

EVENTS = ("before_run", "before_step", "after_loss", "after_backward", "after_step", "after_cancel",
          "after_diverge", "after_run")


@dataclass
class Callback:
    """One attached callable, with the name shown by ``show_loop``."""

    event: str
    fn: Callable
    name: str


class Callbacks:
    """Callbacks by event; attach with ``add``, detach with ``remove``, fire with ``trigger``."""

    def __init__(self):
        self._by_event: dict[str, list[Callback]] = {e: [] for e in EVENTS}

    def add(self, event: str, fn: Callable, name: str | None = None) -> Callback:
        if event not in self._by_event:
            raise ConfigError(f"Unknown event {event!r}; events are {', '.join(EVENTS)}.")
        if not callable(fn):
            raise ConfigError(f"The callback for {event!r} must be callable, got {type(fn).__name__}.")
        cb = Callback(event, fn, name or getattr(fn, "__qualname__", repr(fn)))
        self._by_event[event].append(cb)
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
        """The training loop as text, with every attached callback at its event."""
        lines = []
        for event in EVENTS:
            names = [cb.name for cb in self._by_event[event]]
            lines.append(f"{event:<15} " + (", ".join(names) if names else "-"))
        return "\n".join(lines)
