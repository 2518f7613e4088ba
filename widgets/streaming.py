"""The streaming toolkit every live view is built from: one poller, one feed, rows → ``Buffer``.

* :class:`Poller` — the one way a view polls: ``start_polling()``/``stop_polling()`` register a periodic
  callback (server session or notebook kernel) that calls ``poll(force=False)``. ``poll`` reads what is
  new (cheap: cursors over the history), and *flushes* it to the plots (costly: HoloViews re-renders) at
  most ``max_ui_share`` of the time while the source trains; every poll is wrapped in try/except (an
  exception silently kills a notebook's periodic callback) and shown through ``show_error``.
* :class:`Feed` — one view's cursors over a :class:`workbench.History`: new scalar rows, new entries of
  each array, a restart when the history was truncated (a checkpoint was loaded).
* :func:`points_frame` / :func:`empty_frame` — the rows → ``holoviews.streams.Buffer`` helper.

Plots update *in place*: a ``DynamicMap`` over a ``Buffer`` (curves) or a ``Pipe`` (snapshots) — never
by replacing a pane's object on each poll. Replacing gives a new Bokeh figure each time, and Panel links
the axes of every HoloViews pane of a page that share dimension names (its ``link_axes`` preprocessor):
each swap re-linked ranges of the *other*, live figures, which is what flooded notebooks with
``HoloViews pane model figure(...) could not be replaced`` warnings and the browser console with
``reference ... isn't known`` errors. A plot whose first data is not there yet is added to its layout
when that data arrives (a layout change, once), so a ``DynamicMap`` never starts from an empty frame
(HoloViews 1.23 cannot turn an empty numeric axis into a categorical one in place).

>>> import numpy as np
>>> points_frame(np.array([1, 2]), np.array([0.5, 0.25]), "loss")
   step  loss
0     1  0.50
1     2  0.25
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import panel as pn

from workbench.errors import WorkbenchError


def error_text(exc: BaseException | str) -> str:
    """One line for a person: the workbench's own message, or the exception type and message."""
    if isinstance(exc, str):
        return exc
    if isinstance(exc, WorkbenchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def empty_frame(*columns: str, x: str = "step") -> pd.DataFrame:
    """A typed empty frame (int ``x``, float columns): the first value of a ``Buffer``."""
    return pd.DataFrame({x: np.array([], dtype="int64"), **{c: np.array([], dtype="float64") for c in columns}})


def points_frame(steps, values, name: str, x: str = "step", **extra) -> pd.DataFrame:
    """Rows to send into a ``Buffer`` built from :func:`empty_frame` (same columns, same dtypes)."""
    frame = {x: np.asarray(steps, dtype="int64"), name: np.asarray(values, dtype="float64")}
    frame.update({k: np.asarray(v, dtype="float64") for k, v in extra.items()})
    return pd.DataFrame(frame)


class Feed:
    """One view's cursors over a history: ``rows()`` and ``arrays(name)`` return only what is new.

    ``reset`` turns True when the history got shorter than what was read (truncated when a checkpoint
    was loaded): the cursors start over and the owner should clear what it shows.
    """

    def __init__(self, history):
        self.history = history
        self.cursor = 0
        self.array_cursors: dict[str, int] = {}
        self.reset = False

    def rows(self) -> list[dict]:
        if len(self.history) < self.cursor:
            self.cursor, self.array_cursors, self.reset = 0, {}, True
        rows, self.cursor = self.history.rows_since(self.cursor)
        return rows

    def array_names(self) -> list[str]:
        return self.history.array_names()

    def arrays(self, name: str) -> list:
        """New ``(step, DataArray)`` entries of array ``name``."""
        items, self.array_cursors[name] = self.history.arrays_since(name, self.array_cursors.get(name, 0))
        return items


class Poller:
    """Mixin for a view: ``read()`` new data (cheap), ``flush()`` it to the plots (throttled).

    A subclass sets ``source`` (an object with ``running``), implements ``read() -> int`` and
    ``flush()``, and may override ``refresh()`` (every poll, e.g. a status line) and ``show_error``.
    """

    period: int = 300  # ms between polls
    max_ui_share: float = 0.05  # share of time spent re-rendering plots while the source trains
    flush_budget: float = 0.1  # s: while training, one flush updates plots until this is spent (at least one)
    _callback = None
    _next_flush = 0.0
    _rotation = 0

    def start_polling(self) -> None:
        """Register the periodic poll in the current server session or notebook kernel (idempotent)."""
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(lambda: self.poll(force=False), period=self.period)

    def stop_polling(self) -> None:
        """Remove the periodic poll; the view keeps what it shows."""
        if self._callback is not None:
            try:
                self._callback.stop()
            except Exception:  # noqa: BLE001 - already stopped with its session
                pass
            self._callback = None

    def is_busy(self) -> bool:
        """True while the source trains (``running``: a param of Run and InitLab)."""
        return bool(getattr(getattr(self, "source", None), "running", False))

    def poll(self, force: bool = True) -> int:
        """Read what is new, flush it to the plots unless throttled, refresh; returns the entries read.

        While the source trains, after a flush that took ``c`` seconds of this thread's CPU the next waits
        ``c / max_ui_share``; when it is idle (or ``force``) everything is flushed at once. Never raises.
        """
        try:
            busy = self.is_busy()
            n = self.read()
            if busy and not self.is_busy():  # the loop ended since the read: its last rows are in now
                n += self.read()
                busy = False
            now = time.perf_counter()
            with pn.io.hold():
                if force or not busy:
                    self.flush()
                elif now >= self._next_flush:
                    cpu = time.thread_time()
                    self.flush_some(self.flush_budget)
                    # The cost is this thread's CPU time, not wall time: on a machine loaded by other work a
                    # flush takes longer on the clock without taking more from the training thread, and a
                    # wall-clock throttle then left every plot frozen for minutes.
                    self._next_flush = time.perf_counter() + (time.thread_time() - cpu) / self.max_ui_share
                self.refresh()
            return n
        except Exception as exc:  # noqa: BLE001 - shown to the person, keeps the callback alive
            self.show_error(exc)
            return 0

    def follow(self, interval: float = 0.5, timeout: float | None = None) -> None:
        """Block until the source stops training, refreshing the plots from *this* thread meanwhile.

        A notebook cell that waits for training (``run.run()``, ``run.wait()``) blocks the kernel's event
        loop and with it every periodic callback, so the plots would freeze until the cell ends; a cell
        that ends with ``view.follow()`` after ``run.start()`` keeps them live (outgoing plot updates flow
        from a busy cell). Incoming clicks (Stop) wait for the cell to end: interrupt the kernel to stop.
        """
        deadline = None if timeout is None else time.perf_counter() + timeout
        while self.is_busy() and (deadline is None or time.perf_counter() < deadline):
            self.poll(force=False)
            time.sleep(interval)
        self.poll()

    def read(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def parts(self) -> list:
        """The plots this view flushes (objects with ``flush()``), in priority order."""
        return []

    def pinned(self) -> list:
        """Plots updated at every flush, whatever the budget (a monitor's core curves)."""
        return []

    def flush(self) -> None:
        """Send everything read so far to every plot."""
        for part in self.parts():
            part.flush()

    def flush_some(self, budget: float) -> None:
        """Flush plots in turn (continuing where the last call stopped) until ``budget`` s of CPU are spent.

        One HoloViews update costs tens of ms (more on a loaded machine); a monitor with a dozen probe plots
        flushed at once would spend seconds per flush, and the throttle would then starve every plot (the
        loss curve included) for a minute. Taking turns keeps every plot fresh at a bounded cost.
        """
        t0 = time.thread_time()
        pinned = self.pinned()
        for part in pinned:  # e.g. the loss curve: every flush
            part.flush()
        parts = [p for p in self.parts() if all(p is not q for q in pinned)]
        for i in range(len(parts)):
            parts[(self._rotation + i) % len(parts)].flush()
            if time.thread_time() - t0 > budget:
                self._rotation = (self._rotation + i + 1) % len(parts)
                return
        self._rotation = 0

    def refresh(self) -> None:
        """Called on every poll after the (possible) flush: cheap updates such as a status line."""

    def show_error(self, exc: BaseException | str) -> None:
        print(error_text(exc))  # views override this with a message pane
