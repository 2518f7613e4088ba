"""The cap on trainings running at once across every session of one dashboard server.

A shared CPU server must not start as many trainings as it has visitors. :class:`RunSlots` counts the
stages that train now and refuses one more beyond ``max_running``. It does not rely on any button: for a
:class:`workbench.Run` (and every subclass: fine-tuning, unlearning, relearning, a researcher's own stage)
it attaches two loop callbacks, so *every* way of training — Start, Run N, ``run.run()`` — asks for a
slot before its first step and gives it back when its loop ends:

* ``before_run`` claims a slot, or raises :class:`~workbench.errors.ConfigError` ("the server is already
  training N runs …"): the loop ends before any step, the run's ``status``/``message`` say why, and the
  monitor shows that line;
* ``after_run`` releases it (also after an error or a Stop).

A single blocking Step is not counted (one step). Stages without loop callbacks (the init lab) call
:meth:`RunSlots.claim` themselves before they start a thread and are released when their public
``running`` parameter falls back to False.

The same callbacks enforce the server's limits on what a visitor may ask for (batch size, steps per
start), whatever view or control set the values.

>>> from workbench import Run, data
>>> slots = RunSlots(max_running=1)
>>> ds = data.load("synthetic", n_docs=4)                                    # doctest: +SKIP
>>> a, b = Run("gpt2-1m", ds, max_steps=50), Run("gpt2-1m", ds, max_steps=50)  # doctest: +SKIP
>>> slots.guard(a), slots.guard(b)                                        # doctest: +SKIP
>>> _ = a.start(); b.run()                                                # doctest: +SKIP
Traceback (most recent call last):
ConfigError: The server is already training 1 run(s), its limit ...
"""

from __future__ import annotations

import threading
import weakref

from workbench.errors import ConfigError

SLOT_CALLBACK = "dashboard slot"


class RunSlots:
    """At most ``max_running`` stages train at once; see the module docstring.

    >>> slots = RunSlots(max_running=2)
    >>> slots.max_running, slots.active()
    (2, [])
    """

    def __init__(self, max_running: int = 2, max_batch_size: int | None = None, max_steps: int | None = None):
        if int(max_running) < 1:
            raise ConfigError(f"max_running must be at least 1, got {max_running!r}.")
        self.max_running = int(max_running)
        self.max_batch_size = max_batch_size
        self.max_steps = max_steps
        self._lock = threading.Lock()
        self._holders: weakref.WeakSet = weakref.WeakSet()
        self._guarded: weakref.WeakSet = weakref.WeakSet()

    def active(self) -> list:
        """Stages holding a slot now."""
        with self._lock:
            return list(self._holders)

    def claim(self, stage) -> None:
        """Take a slot for ``stage`` (no-op if it holds one); :class:`ConfigError` when the server is full."""
        with self._lock:
            if stage in self._holders:
                return
            if len(self._holders) >= self.max_running:
                raise ConfigError(f"The server is already training {len(self._holders)} run(s), its limit "
                                  f"(max_running={self.max_running}). Try again when one stops, or use Step meanwhile.")
            self._holders.add(stage)

    def release(self, stage) -> None:
        """Give ``stage``'s slot back (no-op if it holds none)."""
        with self._lock:
            self._holders.discard(stage)

    def check_limits(self, stage) -> None:
        """Refuse values a shared server does not run (``batch_size`` / steps above the server's limits)."""
        batch = getattr(stage, "batch_size", None)
        if self.max_batch_size is not None and isinstance(batch, int) and batch > self.max_batch_size:
            raise ConfigError(f"batch_size={batch} is above this server's limit of {self.max_batch_size}; "
                              f"choose {self.max_batch_size} or less.")
        steps = getattr(stage, "max_steps", None)
        if self.max_steps is not None and isinstance(steps, int) and steps > self.max_steps:
            raise ConfigError(f"max_steps={steps} is above this server's limit of {self.max_steps}; "
                              f"choose {self.max_steps} or less.")

    def start(self, run, n: int | None = None) -> None:
        """``run.start(n)`` under the cap: a :class:`ConfigError` at once when the server is full (a monitor's starter)."""
        self.guard(run)
        self.check_limits(run)
        with self._lock:
            busy = [r for r in self._holders if r is not run]
            if len(busy) >= self.max_running:
                raise ConfigError(f"The server is already training {len(busy)} run(s), its limit (max_running="
                                  f"{self.max_running}). Try again when one stops, or use Step meanwhile.")
        run.start(n)

    def guard(self, stage) -> None:
        """Put ``stage`` under the cap (see the module docstring); a stage already guarded is left as it is."""
        with self._lock:
            if stage in self._guarded:
                return
            self._guarded.add(stage)
        if hasattr(stage, "add_callback"):
            def before_run(run, **_context):
                self.check_limits(run)
                self.claim(run)

            stage.add_callback("before_run", before_run, name=SLOT_CALLBACK)
            stage.add_callback("after_run", lambda run, **_context: self.release(run), name=SLOT_CALLBACK)
        elif "running" in getattr(stage, "param", {}):
            ref = weakref.ref(stage)

            def on_running(event):
                owner = ref()
                if owner is not None and not event.new:
                    self.release(owner)

            stage.param.watch(on_running, "running")
        else:
            raise ConfigError(f"A {type(stage).__name__} has neither loop callbacks nor a `running` parameter, so "
                              f"the dashboard cannot cap its training; serve a workbench stage.")
