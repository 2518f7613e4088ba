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

import os
import weakref
from pathlib import Path
from typing import Callable

import holoviews as hv
import panel as pn
import param
from holoviews.streams import Buffer

from workbench.errors import ConfigError
from workbench.run import Run

from .probe_view import ProbeView, probe_names, run_columns
from .registry import register_view, view
from .resources import Alert, Markdown, load_notebook_extension, publish_bokehjs  # noqa: F401  (re-exported)
from .series import TimeSeries
from .streaming import Feed, Poller, error_text

hv.renderer("bokeh")  # loads the Bokeh backend and its option builders (hv.opts.Curve) without notebook output



def resolve_inside(root: str | os.PathLike, path: str) -> Path:
    """``path`` resolved under ``root``; a path that escapes ``root`` (``..``, absolute elsewhere) is refused."""
    root_p = Path(root).resolve()
    target = (root_p / path).resolve()
    if target != root_p and root_p not in target.parents:
        raise ConfigError(f"{path!r} is outside the folder this app may write to ({root_p}); "
                          f"give a file name or a path inside it.")
    return target


class TrainingMonitor(Poller, pn.viewable.Viewer):
    """Controls, status, core plots and one panel per attached probe; see the module docstring."""

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
    header = param.String(default="", doc="A line of text under the title (e.g. a stage's fixed settings).")
    extras = param.List(default=[], doc="Further panels below the plots (a stage's own tools: mitigation, relearn…).")
    probes = param.Boolean(default=True, doc="Show one panel per attached probe (also probes attached later).")
    compact_if_shown = param.Boolean(default=True, doc="Displayed again while this run's monitor is on the page "
                                                        "(e.g. a cell ending in run.start()): a one-line status instead.")

    def __init__(self, run: Run, **params):
        super().__init__(run=run, **params)
        self.source = run
        self.feed = Feed(run.history)
        self._last_error: str | None = None
        self.probe_panels: dict[int, ProbeView] = {}  # id(probe) -> its panel
        self._probe_ids: tuple = ()
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

        h = self.plot_height
        evals = [f"{label}_loss" for label in getattr(run, "evals", {})]
        self.series = {"loss": TimeSeries(["loss", *evals], title="loss", height=h + 40, buffer_length=self.buffer_length),
                       "lr": TimeSeries(["lr"], title="learning rate", height=h, buffer_length=self.buffer_length),
                       "grad_norm": TimeSeries(["grad_norm"], title="gradient norm (before clipping)", height=h,
                                               buffer_length=self.buffer_length)}
        # Shared view options of the core plots: one smoothing slider and one x axis for all three.
        self.smoothing = pn.widgets.FloatSlider(label="smoothing (EMA β)", start=0, end=0.99, step=0.01, value=0.0, width=170)
        self.x_axis = pn.widgets.RadioButtonGroup(options=["step", "wall_time"], value="step", width=160)
        self.logy = pn.widgets.Checkbox(label="log loss", value=False, width=90)
        self.smoothing.param.watch(lambda e: [ts.param.update(smoothing=e.new) for ts in self.series.values()], "value")
        self.x_axis.param.watch(lambda e: [ts.param.update(x=e.new) for ts in self.series.values()], "value")
        self.logy.param.watch(lambda e: self.series["loss"].param.update(logy=e.new), "value")
        title = f"### {type(run).__name__} · {run.label or run.run_id}"
        sidebar = pn.Column(
            Markdown(title, margin=(0, 10)), *([Markdown(self.header, margin=(0, 10))] if self.header else []), self.status,
            pn.Row(self.step_button, self.start_button, self.stop_button),
            pn.Row(self.n_input, self.run_n_button, align="end"),
            pn.Row(self.checkpoint_path, self.save_button, align="end", sizing_mode="stretch_width"),
            self.alert, self.info,
            pn.Card(self.controls, title="Parameters", collapsed=False, sizing_mode="stretch_width"),
            width=360,
        )
        plots = pn.Column(pn.Row(self.smoothing, self.logy, self.x_axis), self.series["loss"],
                          pn.Row(self.series["lr"], self.series["grad_norm"], sizing_mode="stretch_width"),
                          sizing_mode="stretch_width")
        self.probe_column = pn.Column(sizing_mode="stretch_width")
        self._layout = pn.Column(pn.Row(sidebar, plots, sizing_mode="stretch_width"), self.probe_column,
                                 *self.extras, sizing_mode="stretch_width")
        self._sync_probes()
        self._sync_buttons()

    def __panel__(self):
        return self._layout

    def _repr_mimebundle_(self, include=None, exclude=None):
        # Displaying a run in a notebook lands here; Panel needs its extension loaded in the kernel first.
        load_notebook_extension()
        shown = _ON_PAGE.get(self.run)
        if self.compact_if_shown and shown is not None and shown is not self and shown._callback is not None:
            # The run's monitor is already on the page (a cell ending in run.start() or run.run(n) displays
            # the run it returns): one live status line instead of a second monitor.
            self.stop_polling()
            return RunStatus(self.run)._repr_mimebundle_(include, exclude)
        _ON_PAGE[self.run] = self
        return super()._repr_mimebundle_(include, exclude)

    @property
    def buffers(self) -> dict[str, Buffer]:
        """The streams behind the core plots, by history column (what the plots draw)."""
        return {name: buf for ts in self.series.values() for name, buf in ts.buffers.items()}

    def part(self, name: str):
        """The plot showing history name ``name`` — a core plot or a probe panel's — or None (not logged yet)."""
        core = next((ts for ts in self.series.values() if name in ts.buffers), None)
        return core or next((p for p in (v.part(name) for v in self.probe_panels.values()) if p is not None), None)

    # ------------------------------------------------------------------ probes
    def _sync_probes(self) -> None:
        """One panel per attached probe; probes attached (or removed) since the last poll are picked up."""
        if not self.probes:
            return
        probes = list(self.run.probes)
        ids = tuple(id(p) for p in probes)
        if ids == self._probe_ids:
            return
        self._probe_ids = ids
        for gone in set(self.probe_panels) - set(ids):
            self.probe_panels.pop(gone)
        unattributed = [p for p in probes if probe_names(p) is None]
        for probe in probes:
            if id(probe) in self.probe_panels:
                continue
            if probe_names(probe) is None and probe is not unattributed[0]:
                continue  # without the core's logged_names, unattributed probes share the first one's panel
            self.probe_panels[id(probe)] = view(probe, run=self.run, poll=False, exclude=self._claimed_by_others(probe),
                                                title=" · ".join(type(p).__name__ for p in unattributed)
                                                if probe_names(probe) is None and len(unattributed) > 1 else type(probe).__name__)
        self.probe_column.objects = [pn.Card(panel, title=panel.title, sizing_mode="stretch_width")
                                     for pid, panel in self.probe_panels.items()]

    def _claimed_by_others(self, probe) -> Callable[[str], bool]:
        """Names another panel shows: the core plots' columns, the run's own columns, other probes' names."""
        def claimed(name: str) -> bool:
            if name in self.buffers or name.endswith("_loss") or name in run_columns(self.run):
                return True
            return any(name in (probe_names(p) or ()) for p in self.run.probes if p is not probe)

        return claimed

    # ------------------------------------------------------------------ polling
    def read(self) -> int:
        rows = self.feed.rows()
        if self.feed.reset:  # history truncated (checkpoint loaded): start over
            self.feed.reset = False
            for ts in self.series.values():
                ts.clear()
        for row in rows:
            for key in row:
                if key.endswith("_loss") and key not in self.series["loss"].buffers:
                    self.series["loss"].add_column(key)  # an eval probe added a held-out loss
        for ts in self.series.values():
            ts.add_rows(rows)
        self._sync_probes()
        n = len(rows)
        for panel in self.probe_panels.values():
            n += panel.read()
        return n

    def pinned(self) -> list:
        return list(self.series.values())

    def parts(self) -> list:
        """Core plots first, then every probe panel's plots (flushed in turn while training)."""
        return [*self.series.values(), *(p for panel in self.probe_panels.values() for p in panel.parts())]

    def refresh(self) -> None:
        self._refresh_status()

    def poll(self, force: bool = True) -> int:
        """Read history rows since this view's cursor into the plots and refresh the status; returns rows read.

        Runs in the server/kernel thread (the periodic callback calls ``poll(force=False)``, which batches
        plot updates to ``max_ui_share`` of the time while training; see :class:`widgets.streaming.Poller`).
        Never raises: an exception is shown as the message.
        """
        return Poller.poll(self, force)

    def show_error(self, exc) -> None:
        self._show_error(exc)

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
        locked = set(getattr(type(self.run), "LOCKED_WHILE_TRAINING", ()))
        labels = {self.run.param[p].label for p in locked if p in self.run.param}
        for widget in self.controls.layout.objects:
            if getattr(widget, "name", None) in labels and hasattr(widget, "disabled") and widget.disabled != busy:
                widget.disabled = busy

    @property
    def is_training(self) -> bool:
        """True while a run()/start() loop is active (the run's ``running`` param)."""
        return bool(self.run.running)

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


_ON_PAGE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # run -> the monitor displayed for it


class RunStatus(Poller, pn.viewable.Viewer):
    """One live line about a run whose monitor is shown elsewhere on the page (step, status, loss)."""

    def __init__(self, run: Run, period: int = 500):
        super().__init__()
        self.source = self.run = run
        self.period = period
        self.text = Markdown(self._text(), margin=(0, 10))
        self.start_polling()

    def _text(self) -> str:
        run = self.run
        return (f"{type(run).__name__} · {run.label or run.run_id} · step {run.global_step} · {run.status} — its monitor "
                f"is shown above (`widgets.view(run, compact_if_shown=False)` for another)")

    def read(self) -> int:
        return 0

    def flush(self) -> None:
        pass

    def refresh(self) -> None:
        text = self._text()
        if text != self.text.object:
            self.text.object = text
        if not self.run.running and self.run.status != "running":
            self.stop_polling()

    def __panel__(self):
        return self.text


@register_view(Run)
def training_monitor(run: Run, **kwargs) -> TrainingMonitor:
    """The default view of a :class:`~workbench.Run` and of its subclasses."""
    return TrainingMonitor(run, **kwargs)
