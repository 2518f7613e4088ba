"""TrainingMonitor: the live panel of a :class:`workbench.Run` (and of every subclass without its own view).

>>> import widgets
>>> monitor = widgets.view(run)      # or simply display `run` in a notebook cell   # doctest: +SKIP
>>> monitor.poll()                   # read new history rows into the plots now   # doctest: +SKIP

What it shows:

* controls generated from the run's *editable* declared parameters (``pn.Param``); the published,
  read-only state (``status``, ``loss``, …) is deliberately left out, so the UI never watches a value the
  training thread writes;
* buttons Step (one blocking step), Run N (``run.start(n)``), Start (``run.start()``, a background
  thread), Stop (``run.stop(wait=False)``: the loop ends at the next step boundary), Save checkpoint;
* a status line (step, status, loss, steps/s) and live plots of ``loss`` (with every ``*_loss`` eval
  column overlaid), ``lr`` and ``grad_norm``.

How it stays out of the training loop's way: a periodic callback (server or kernel thread, every
``period`` ms) reads ``run.history.rows_since(cursor)`` with a cursor of its own and sends only the new
rows into bounded ``holoviews.streams.Buffer`` streams, inside ``pn.io.hold()``. The training thread
never touches a Bokeh model; several monitors (sessions, late joiners) each keep their own cursor.
Errors from buttons or from the background run are shown as a one-line message, never a traceback.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from holoviews.streams import Buffer

from workbench.errors import ConfigError, WorkbenchError
from workbench.run import Run

from .registry import register_view
from .resources import Alert, Markdown, load_notebook_extension, publish_bokehjs  # noqa: F401  (re-exported)

hv.renderer("bokeh")  # loads the Bokeh backend and its option builders (hv.opts.Curve) without notebook output

PLOTTED = ("loss", "lr", "grad_norm")  # fixed panels; every other column ending in "_loss" joins the loss plot


def error_text(exc: BaseException) -> str:
    """One line for a visitor: the workbench's own message, or the exception type and message."""
    if isinstance(exc, WorkbenchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def resolve_inside(root: str | os.PathLike, path: str) -> Path:
    """``path`` resolved under ``root``; a path that escapes ``root`` (``..``, absolute elsewhere) is refused."""
    root_p = Path(root).resolve()
    target = (root_p / path).resolve()
    if target != root_p and root_p not in target.parents:
        raise ConfigError(f"{path!r} is outside the folder this app may write to ({root_p}); "
                          f"give a file name or a path inside it.")
    return target


class TrainingMonitor(pn.viewable.Viewer):
    """Controls, status and streaming plots of one run; see the module docstring."""

    run = param.ClassSelector(class_=Run, doc="The run shown and driven by this monitor.")
    period = param.Integer(default=300, bounds=(50, None), doc="Poll the history every this many milliseconds.")
    buffer_length = param.Integer(default=2000, bounds=(10, None), doc="Points kept per plotted curve (oldest dropped).")
    parameters = param.List(default=None, allow_None=True, doc="Editable params shown as controls (None: all of run.config()).")
    widgets = param.Dict(default={}, doc="Widget overrides for pn.Param (e.g. bounds for a public dashboard).")
    save_root = param.String(default=None, allow_None=True,
                             doc="If set, checkpoints may only be written inside this folder (public dashboards).")
    starter = param.Callable(default=None, allow_None=True,
                             doc="Called as starter(run, n) instead of run.start(n) (e.g. a cap on concurrent runs).")
    max_ui_share = param.Number(default=0.05, bounds=(0.001, 1),
                                doc="Target share of time spent re-rendering plots while training (batches updates).")
    plot_height = param.Integer(default=220, doc="Height of each plot in pixels.")

    def __init__(self, run: Run, **params):
        super().__init__(run=run, **params)
        self._cursor = 0
        self._pending: dict[str, list[tuple[int, float]]] = {}  # rows read but not yet sent to the plots
        self._new_loss_columns: list[str] = []
        self._next_flush = 0.0
        self._buffers: dict[str, Buffer] = {}
        self._loss_columns: list[str] = ["loss"] + [f"{label}_loss" for label in getattr(run, "evals", {})]
        self._callback = None
        self._last_error: str | None = None
        self._build()
        self.start_polling()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        run = self.run
        editable = self.parameters if self.parameters is not None else list(run.config())
        state = set(getattr(run, "STATE_PARAMS", ()))
        editable = [p for p in editable if p in run.param and p not in state and not run.param[p].constant]
        self.controls = pn.Param(run.param, parameters=editable, widgets=dict(self.widgets), show_name=False,
                                 sizing_mode="stretch_width")
        self.step_button = pn.widgets.Button(label="Step", color="default", description="One optimizer step")
        self.run_n_button = pn.widgets.Button(label="Run N", color="primary", description="Train N more steps in the background")
        self.n_input = pn.widgets.IntInput(label="N", value=50, start=1, end=1_000_000, width=90)
        self.start_button = pn.widgets.Button(label="Start", color="success", description="Train up to max_steps in the background")
        self.stop_button = pn.widgets.Button(label="Stop", color="danger", disabled=True, description="Stop at the next step boundary")
        default_ckpt = Path("results") / "checkpoints" / f"{run.label or 'run'}-{run.run_id}.pt"
        if self.save_root is not None:
            default_ckpt = Path("checkpoints") / default_ckpt.name
        self.checkpoint_path = pn.widgets.TextInput(label="Checkpoint path", value=str(default_ckpt), sizing_mode="stretch_width")
        self.save_button = pn.widgets.Button(label="Save checkpoint", color="default")
        self.status = Markdown(self._status_text(), sizing_mode="stretch_width", margin=(0, 10))
        self.alert = Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self.info = Alert("", alert_type="success", visible=False, sizing_mode="stretch_width")

        self.step_button.on_click(self._on_step)
        self.run_n_button.on_click(self._on_run_n)
        self.start_button.on_click(self._on_start)
        self.stop_button.on_click(self._on_stop)
        self.save_button.on_click(self._on_save)

        for name in [*self._loss_columns, "lr", "grad_norm"]:
            self._buffers[name] = self._new_buffer(name)
        self.loss_pane = pn.pane.HoloViews(self._loss_plot(), sizing_mode="stretch_width", height=self.plot_height + 40)
        self.lr_pane = pn.pane.HoloViews(self._curve("lr", "learning rate"), sizing_mode="stretch_width", height=self.plot_height)
        self.grad_pane = pn.pane.HoloViews(self._curve("grad_norm", "gradient norm (before clipping)"),
                                           sizing_mode="stretch_width", height=self.plot_height)
        title = f"### {type(run).__name__} · {run.label or run.run_id}"
        sidebar = pn.Column(
            Markdown(title, margin=(0, 10)), self.status,
            pn.Row(self.step_button, self.start_button, self.stop_button),
            pn.Row(self.n_input, self.run_n_button, align="end"),
            pn.Row(self.checkpoint_path, self.save_button, align="end", sizing_mode="stretch_width"),
            self.alert, self.info,
            pn.Card(self.controls, title="Parameters", collapsed=False, sizing_mode="stretch_width"),
            width=360,
        )
        plots = pn.Column(self.loss_pane, pn.Row(self.lr_pane, self.grad_pane, sizing_mode="stretch_width"),
                          sizing_mode="stretch_width")
        self._layout = pn.Row(sidebar, plots, sizing_mode="stretch_width")
        self._sync_buttons()

    def __panel__(self):
        return self._layout

    def _repr_mimebundle_(self, include=None, exclude=None):
        # Displaying a run in a notebook lands here; Panel needs its extension loaded in the kernel first.
        load_notebook_extension()
        return super()._repr_mimebundle_(include, exclude)

    # ------------------------------------------------------------------ plots
    def _new_buffer(self, name: str) -> Buffer:
        empty = pd.DataFrame({"step": np.array([], dtype="int64"), name: np.array([], dtype="float64")})
        return Buffer(empty, length=self.buffer_length, index=False)

    def _curve(self, name: str, title: str | None = None, label: str | None = None):
        def element(data, _name=name):
            return hv.Curve(data, "step", _name, label=label or "")

        dmap = hv.DynamicMap(element, streams=[self._buffers[name]])
        opts = dict(responsive=True, height=self.plot_height, framewise=True, tools=["hover"], show_grid=True,
                    padding=(0, 0.1))
        if title:
            opts["title"] = title
        return dmap.opts(hv.opts.Curve(**opts))

    def _loss_plot(self):
        overlay = None
        for name in self._loss_columns:
            curve = self._curve(name, label=name)
            if name != "loss":  # evaluations are sparse (every eval_every steps): mark each measurement
                dots = hv.DynamicMap(lambda data, _n=name: hv.Scatter(data, "step", _n, label=_n),
                                     streams=[self._buffers[name]]).opts(hv.opts.Scatter(size=6, framewise=True))
                curve = curve * dots
            overlay = curve if overlay is None else overlay * curve
        return overlay.opts(hv.opts.Overlay(title="loss", legend_position="top_right", responsive=True,
                                            height=self.plot_height + 40))

    @property
    def buffers(self) -> dict[str, Buffer]:
        """The streams behind the plots, by history column (read their ``.data`` in tests)."""
        return dict(self._buffers)

    # ------------------------------------------------------------------ polling
    def start_polling(self) -> None:
        """Register the periodic poll (in the current server session or notebook kernel)."""
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(lambda: self.poll(force=False), period=self.period)

    def stop_polling(self) -> None:
        """Stop the periodic poll (the view stays as it is)."""
        if self._callback is not None:
            try:
                self._callback.stop()
            except Exception:
                pass
            self._callback = None

    def poll(self, force: bool = True) -> int:
        """Read history rows since this view's cursor, send them to the plots, refresh the status; returns rows read.

        Runs in the server/kernel thread (the periodic callback calls ``poll(force=False)``). Plot updates
        are HoloViews re-renders, the costly part (tens of ms each on a busy CPU), so unless ``force`` they
        are batched: after a flush that took ``c`` seconds the next one waits ``c / max_ui_share``, keeping
        the view's share of the process's time near ``max_ui_share`` however loaded the machine is. The
        status line is refreshed on every poll. Never raises: an exception would silently kill a
        notebook's periodic callback, so it is shown as the message instead.
        """
        try:
            history = self.run.history
            if len(history) < self._cursor:  # history truncated (checkpoint loaded): start over
                self._cursor = 0
                self._pending.clear()
                for buf in self._buffers.values():
                    buf.clear()
            rows, self._cursor = history.rows_since(self._cursor)
            training = self.run.running  # set False (with the final status) only after the loop's last row
            if not training:  # the loop may have ended since the read: its last rows are in now
                more, self._cursor = history.rows_since(self._cursor)
                rows += more
            for row in rows:
                for key, value in row.items():
                    if key == "step" or not isinstance(value, (int, float)) or isinstance(value, bool):
                        continue
                    if key not in self._buffers:
                        if not key.endswith("_loss"):
                            continue
                        self._new_loss_columns.append(key)
                        self._buffers[key] = self._new_buffer(key)
                        self._loss_columns.append(key)
                    if math.isfinite(value):
                        self._pending.setdefault(key, []).append((row["step"], float(value)))
            now = time.perf_counter()
            flush = force or now >= self._next_flush or not training
            with pn.io.hold():
                if flush and (self._pending or self._new_loss_columns):
                    self._flush()
                    cost = time.perf_counter() - now
                    self._next_flush = time.perf_counter() + cost / self.max_ui_share
                self._refresh_status()
            return len(rows)
        except Exception as exc:  # noqa: BLE001 - shown to the user, keeps the callback alive
            self._show_error(exc)
            return 0

    def _flush(self) -> None:
        """Send the pending points into the Buffers (one HoloViews update per plotted column)."""
        if self._new_loss_columns:  # a probe added an eval loss: rebuild the loss overlay once
            self._new_loss_columns = []
            self.loss_pane.object = self._loss_plot()
        pending, self._pending = self._pending, {}
        for key, pts in pending.items():
            steps, values = zip(*pts)
            self._buffers[key].send(pd.DataFrame({"step": np.asarray(steps, dtype="int64"),
                                                  key: np.asarray(values, dtype="float64")}))

    def _status_text(self) -> str:
        run = self.run
        loss = run.history.latest("loss") if run.global_step else None
        sps = run.steps_per_sec
        parts = [f"**step** {run.global_step}", f"**status** {run.status}",
                 f"**loss** {loss:.4f}" if isinstance(loss, (int, float)) else "**loss** –",
                 f"**steps/s** {sps:.1f}" if sps else "**steps/s** –"]
        return " · ".join(parts)

    def _refresh_status(self) -> None:
        text = self._status_text()
        if text != self.status.object:
            self.status.object = text
        run = self.run
        if run.status in ("error", "diverged") and run.message and run.message != self._last_error:
            self._show_error(run.message)
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        busy = self.is_training
        for button, disabled in ((self.step_button, busy), (self.run_n_button, busy), (self.start_button, busy),
                                 (self.save_button, busy), (self.stop_button, not busy)):
            if button.disabled != disabled:
                button.disabled = disabled

    @property
    def is_training(self) -> bool:
        """True while the run's background thread (or a blocking loop) is active."""
        thread = getattr(self.run, "_thread", None)
        return bool(self.run.running or (thread is not None and thread.is_alive()))

    # ------------------------------------------------------------------ messages
    def _show_error(self, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else error_text(exc)
        self._last_error = text
        self.info.visible = False
        self.alert.object = text
        self.alert.visible = True

    def _show_info(self, text: str) -> None:
        self.alert.visible = False
        self.info.object = text
        self.info.visible = True

    def _clear_messages(self) -> None:
        self.alert.visible = False
        self.info.visible = False

    def _guarded(self, action: Callable[[], str | None]) -> None:
        """Run a button action; its return is shown as info, any exception as the error message."""
        self._clear_messages()
        try:
            text = action()
        except Exception as exc:  # noqa: BLE001 - a message for the visitor, not a traceback
            self._show_error(exc)
        else:
            if text:
                self._show_info(text)
        self.poll()

    # ------------------------------------------------------------------ buttons
    def _start(self, n: int | None) -> None:
        if self.starter is not None:
            self.starter(self.run, n)
        else:
            self.run.start(n)

    def _on_step(self, _event=None) -> None:
        self._guarded(lambda: (self.run.step(), None)[1])

    def _on_run_n(self, _event=None) -> None:
        n = int(self.n_input.value or 0)
        if n < 1:
            self._show_error(ConfigError(f"N must be a whole number ≥ 1, got {n}."))
            return
        self._guarded(lambda: self._start(n))
        self._sync_buttons()

    def _on_start(self, _event=None) -> None:
        def start():
            run = self.run
            if run.global_step >= run.max_steps:
                raise ConfigError(f"The run is already at max_steps ({run.max_steps}); raise max_steps or use Run N.")
            self._start(None)

        self._guarded(start)

    def _on_stop(self, _event=None) -> None:
        self._guarded(lambda: (self.run.stop(wait=False), "Stopping at the next step boundary.")[1])

    def _on_save(self, _event=None) -> None:
        def save():
            raw = (self.checkpoint_path.value or "").strip()
            if not raw:
                raise ConfigError("Give a checkpoint path (a file name such as run.pt).")
            if self.save_root is not None:
                path = resolve_inside(self.save_root, raw)
            else:
                path = Path(raw).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            written = self.run.save_checkpoint(path)
            return f"Checkpoint at step {self.run.global_step} saved to {written}."

        self._guarded(save)


@register_view(Run)
def training_monitor(run: Run, **kwargs) -> TrainingMonitor:
    """The default view of a :class:`~workbench.Run` and of its subclasses."""
    return TrainingMonitor(run, **kwargs)
