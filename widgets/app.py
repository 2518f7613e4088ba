"""The workbench dashboard: a Panel app where each browser session trains its own tiny default run.

Serve it with ``workbench serve`` / ``make serve`` (see :mod:`widgets.serve`) or directly::

    panel serve widgets/app.py --address 127.0.0.1 --port 5006 --allow-websocket-origin=127.0.0.1:5006

Each session gets a fresh :class:`workbench.Run` (``gpt2-1m`` on the built-in ``stories`` corpus; the
tokenized dataset is built once per process and shared read-only) wrapped in a
:class:`~widgets.monitor.TrainingMonitor`, plus a record tab. A visitor can Step/Start/Stop at once.

Safety for a shared server: nothing a visitor types is evaluated — controls are typed widgets generated
from declared parameters, with bounds on batch size and length; checkpoints and records can only be
written or opened inside ``results_dir``; closing the tab stops the session's run
(``pn.state.on_session_destroyed``); and at most ``max_running`` trainings run at once across all
sessions (:class:`RunSlots`) — the visitor who hits the cap is told so and can Step meanwhile.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path

import panel as pn
import param

from workbench import Run, data as wb_data
from workbench.errors import ConfigError

from widgets.monitor import TrainingMonitor  # absolute: `panel serve widgets/app.py` runs this file as a script
from widgets.record_view import RecordView
from widgets.resources import Alert, Markdown


class RunSlots:
    """A cap on concurrently training runs, shared by every session of one server process."""

    def __init__(self, max_running: int = 2):
        self.max_running = int(max_running)
        self._lock = threading.Lock()
        self._runs: weakref.WeakSet = weakref.WeakSet()

    def active(self) -> list[Run]:
        """Runs of this server that are training now."""
        alive = []
        for run in list(self._runs):
            thread = getattr(run, "_thread", None)
            if run.running or (thread is not None and thread.is_alive()):
                alive.append(run)
            else:
                self._runs.discard(run)
        return alive

    def start(self, run: Run, n: int | None = None) -> None:
        """``run.start(n)`` if a slot is free, else a :class:`ConfigError` that says so (used as the monitor's starter)."""
        with self._lock:
            busy = [r for r in self.active() if r is not run]
            if len(busy) >= self.max_running:
                raise ConfigError(f"The server is already training {len(busy)} run(s), its limit (max_running="
                                  f"{self.max_running}). Try again when one stops, or use Step meanwhile.")
            run.start(n)
            self._runs.add(run)


class DashboardConfig(param.Parameterized):
    """Settings of the served dashboard (environment variables ``WORKBENCH_*`` set the defaults)."""

    model = param.String(default=os.environ.get("WORKBENCH_MODEL", "gpt2-1m"), doc="Preset of each session's run.")
    dataset = param.String(default="stories", doc="Built-in dataset of each session's run.")
    n_docs = param.Integer(default=int(os.environ.get("WORKBENCH_N_DOCS", "300")), bounds=(10, None),
                           doc="Training documents (small, so a session is ready in seconds).")
    batch_size = param.Integer(default=8, bounds=(1, 64), doc="Default batch size of a session's run.")
    max_steps = param.Integer(default=500, bounds=(1, None), doc="Default length of Start.")
    max_running = param.Integer(default=int(os.environ.get("WORKBENCH_MAX_RUNNING", "2")), bounds=(1, None),
                                doc="Trainings allowed to run at once across all sessions.")
    results_dir = param.String(default=os.environ.get("WORKBENCH_RESULTS", "results/dashboard"),
                               doc="The only folder visitors can save checkpoints/records to or open records from.")
    period = param.Integer(default=300, bounds=(50, None), doc="Plot refresh period (ms).")


CONFIG = DashboardConfig()
SLOTS = RunSlots(CONFIG.max_running)

# What a visitor may change, with bounds that keep a shared CPU server usable.
VISITOR_PARAMS = ["optimizer", "lr", "schedule", "warmup_steps", "weight_decay", "grad_clip", "batch_size",
                  "max_steps", "seed", "log_every", "eval_every", "label"]
VISITOR_WIDGETS = {
    "batch_size": {"type": pn.widgets.IntSlider, "start": 1, "end": 64},
    "max_steps": {"type": pn.widgets.IntInput, "start": 1, "end": 20_000},
    "log_every": {"type": pn.widgets.IntInput, "start": 1, "end": 1000},
    "eval_every": {"type": pn.widgets.IntInput, "start": 0, "end": 5000},
    "warmup_steps": {"type": pn.widgets.IntInput, "start": 0, "end": 20_000},
}


def shared_dataset(config: DashboardConfig = CONFIG):
    """The session runs' dataset, built once per server process (splits are read-only tensors)."""
    key = f"workbench-dashboard-data-{config.dataset}-{config.n_docs}"
    return pn.state.as_cached(key, lambda: wb_data.load(config.dataset, n_docs=config.n_docs,
                                                        n_val_docs=max(20, config.n_docs // 10)))


def default_run(config: DashboardConfig = CONFIG) -> Run:
    """A fresh run of the embedded default experiment."""
    return Run(config.model, shared_dataset(config), batch_size=config.batch_size, max_steps=config.max_steps,
               log_every=5, eval_every=25, eval_batches=2, label="session")


def session_view(run: Run, config: DashboardConfig = CONFIG, slots: RunSlots | None = None) -> pn.viewable.Viewable:
    """The dashboard for one session: the run's monitor and a record tab, sandboxed to ``results_dir``."""
    slots = slots or SLOTS
    root = Path(config.results_dir)
    root.mkdir(parents=True, exist_ok=True)
    monitor = TrainingMonitor(run, parameters=VISITOR_PARAMS, widgets=VISITOR_WIDGETS, save_root=str(root),
                              starter=slots.start, period=config.period)
    records = RecordView(root=str(root))
    snapshot = pn.widgets.Button(label="Show this run's record", color="primary")

    def show_record(_event=None):
        records.clear()
        records.add(run.record, label=run.label or "this run")

    snapshot.on_click(show_record)
    record_name = pn.widgets.TextInput(label="Save record as", value=f"{run.run_id}.nc")
    save_record = pn.widgets.Button(label="Save record", color="default")
    saved = Alert("", visible=False, sizing_mode="stretch_width")

    def do_save(_event=None):
        try:
            from widgets.monitor import resolve_inside

            path = resolve_inside(root, record_name.value.strip() or f"{run.run_id}.nc")
            run.save_record(path)
            saved.object, saved.alert_type = f"Record saved to {path} (open it by name above).", "success"
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            from widgets.monitor import error_text

            saved.object, saved.alert_type = error_text(exc), "danger"
        saved.visible = True

    save_record.on_click(do_save)
    intro = Markdown(
        f"**workbench** · a `{config.model}` model on the built-in `{config.dataset}` corpus, yours alone for this "
        f"browser session. Step it, Start/Stop it, change its parameters. At most {slots.max_running} trainings run "
        f"at once on this server.", sizing_mode="stretch_width")
    record_tab = pn.Column(pn.Row(snapshot, record_name, save_record, align="end"), saved, records,
                           sizing_mode="stretch_width")
    layout = pn.Column(intro, pn.Tabs(("Training", monitor), ("Record", record_tab), dynamic=False),
                       sizing_mode="stretch_width")
    layout.monitor = monitor  # for tests and embedding
    return layout


def create_app(config: DashboardConfig = CONFIG, slots: RunSlots | None = None) -> pn.viewable.Viewable:
    """Build one session's dashboard; inside a server session, its run stops when the session closes."""
    run = default_run(config)
    layout = session_view(run, config, slots)

    def on_destroyed(_context, _run=run, _monitor=layout.monitor):
        _monitor.stop_polling()
        _run.stop(wait=False)

    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        pn.state.on_session_destroyed(on_destroyed)
    return layout


if __name__.startswith("bokeh_app"):  # `panel serve widgets/app.py`: use the package module so SLOTS is shared
    pn.extension()
    from widgets.app import CONFIG as _CONFIG, create_app as _create_app
    from widgets.serve import set_torch_threads

    set_torch_threads(_CONFIG.max_running)

    _create_app().servable(title="workbench")
