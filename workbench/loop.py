"""The lifecycle every training stage shares: blocking ``run()``, background ``start()``, ``stop()``, ``wait()``.

One answer to "is it training?": the read-only parameter ``running``. It is True from the moment
``run()``, ``start()`` or ``step()`` is entered until that loop — or its background thread — has
finished *everything* (``after_run`` callbacks included; the thread only returns after it), so a view
can watch it, and code that sees ``running`` False can checkpoint, load or change any parameter.
``status`` says what the last loop came to (``finished``, ``stopped``, ``diverged``, ``error``).

While ``running``, the parameters a subclass lists in ``LOCKED_WHILE_TRAINING`` cannot change (a
:class:`~workbench.errors.ConfigError` says "stop() first"), so a stage's parameters and record never
claim a setting the loop is not using. Non-finite numbers are refused for every declared number.

A subclass implements ``_loop(n, progress)``; this class does the claiming, threading and waiting.

>>> class Count(Loop):
...     def _loop(self, n, progress):
...         self.total = n
>>> c = Count().start(3).wait()
>>> c.total, c.running, c.status
(3, False, 'finished')
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import param

from .errors import ConfigError, DivergedError

STATUSES = ("idle", "running", "stopped", "finished", "diverged", "error")


class Loop(param.Parameterized):
    """``running``/``status``/``message`` and the run/start/stop/wait lifecycle (see the module docstring)."""

    status = param.Selector(default="idle", objects=list(STATUSES), constant=True, doc="Outcome of the last loop.")
    running = param.Boolean(default=False, constant=True,
                            doc="True from run()/start()/step() until the loop (and its thread) has ended.")
    message = param.String(default="", constant=True, doc="Last status message (errors, stops).")

    #: declared parameters that cannot change while ``running``; views disable their controls meanwhile
    LOCKED_WHILE_TRAINING: tuple[str, ...] = ()
    #: why each locked parameter is locked (said in the error)
    LOCK_REASONS: dict[str, str] = {}

    def __init__(self, **params):
        self._claim_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        #: the exception that ended a background loop (re-raised, and cleared, by ``wait()``)
        self.error: BaseException | None = None
        super().__init__(**params)

    def __setattr__(self, name: str, value: Any) -> None:
        # Every declared parameter is set through here (param.update and widgets too): refuse before changing.
        if isinstance(value, float) and not math.isfinite(value) and name in self.param:
            raise ConfigError(f"{name} must be a finite number, got {value}. Pass a finite value.")
        if name in self.LOCKED_WHILE_TRAINING and "_claim_lock" in self.__dict__ and self.running \
                and value != getattr(self, name):
            why = self.LOCK_REASONS.get(name)
            raise ConfigError(f"{name} cannot change while {type(self).__name__} is training"
                              f"{f' ({why})' if why else ''}; it stays {getattr(self, name)!r}. stop() first, then set it.")
        super().__setattr__(name, value)

    # -- running ---------------------------------------------------------------------------------
    def _check_can_train(self) -> None:
        """Raise if the stage cannot train now (e.g. it diverged); called inside the claim."""
        if self.status == "diverged":
            raise DivergedError(self.message + " Load a checkpoint or build a new run to continue.")

    def _claim(self, **values) -> None:
        """Become ``running`` (atomically: one loop or step at a time), or say why not."""
        with self._claim_lock:
            if self.running:
                raise ConfigError(f"This {type(self).__name__} is already training (in the background or in another "
                                  "call); call stop() or wait() first.")
            self._check_can_train()
            self._idle.clear()
            with param.edit_constant(self):
                self.param.update(running=True, **values)

    def _release(self, **values) -> None:
        """The very last thing a loop or step does: ``running`` becomes False (with the outcome)."""
        try:
            with param.edit_constant(self):
                self.param.update(running=False, **values)
        finally:
            self._idle.set()

    def _failed(self, exc: BaseException) -> str:
        """The status for a loop ended by ``exc`` (its message published unless it set its own)."""
        if isinstance(exc, DivergedError):
            return "diverged"
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C: the loop stopped where it was; it can continue
            with param.edit_constant(self):
                self.param.update(message="Interrupted (KeyboardInterrupt); the stage can continue from where it stopped.")
            return "stopped"
        with param.edit_constant(self):
            self.param.update(message=f"{type(exc).__name__}: {exc}")
        return "error"

    def _loop(self, n: int | None, progress: bool) -> None:  # pragma: no cover - abstract
        """Train (the caller holds the claim); set ``status`` to the outcome."""
        raise NotImplementedError

    def _run_loop(self, n, progress) -> None:
        try:
            self._loop(n, progress)
        except BaseException as exc:
            if self.status in ("running", "idle"):
                with param.edit_constant(self):
                    self.param.update(status=self._failed(exc))
            raise
        else:
            if self.status == "running":
                with param.edit_constant(self):
                    self.param.update(status="finished")

    @staticmethod
    def _check_n(n) -> None:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ConfigError(f"run(n) needs a whole number of steps ≥ 0, got {n!r}.")

    def run(self, n: int | None = None, progress: bool = True):
        """Train ``n`` more steps (default: to the stage's end), blocking; ``stop()`` from another thread ends it early."""
        self._check_n(n)
        self._claim(status="running", message="")
        self._stop_event.clear()
        try:
            self._run_loop(n, progress)
        finally:
            self._release()
        return self

    def start(self, n: int | None = None):
        """Train in a background thread (non-blocking); ``stop()`` ends it at a step boundary.

        ``running`` stays True until the thread has finished everything; an error ends up in ``error``
        and is re-raised by ``wait()``.
        """
        self._check_n(n)
        self._claim(status="running", message="")
        self._stop_event.clear()
        self.error = None

        def target():
            try:
                self._run_loop(n, False)
            except BaseException as exc:  # kept for wait(); status and message are already set
                self.error = exc
            finally:
                self._release()

        try:
            self._thread = threading.Thread(target=target, name=f"workbench-{type(self).__name__}", daemon=True)
            self._thread.start()
        except BaseException:
            self._release()
            raise
        return self

    @property
    def stop_requested(self) -> bool:
        """True once ``stop()`` asked the current loop to end (checked between steps)."""
        return self._stop_event.is_set()

    def stop(self, wait: bool = True, timeout: float | None = None):
        """Ask a running loop to stop after the current step; by default wait until it has."""
        self._stop_event.set()
        if wait:
            self.wait(timeout)
        return self

    def wait(self, timeout: float | None = None):
        """Block until ``running`` is False (or ``timeout`` seconds); re-raise a background loop's error, if any."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return self
            self._idle.wait(left)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self.error is not None and not self.running:
            err, self.error = self.error, None
            raise err
        return self
