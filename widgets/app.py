"""The workbench dashboard: every lab (and a researcher's own experiment) for each browser session.

This module *builds* one session's page; :mod:`widgets.serve` *serves* it (``workbench serve``,
``make serve``, ``python -m widgets.serve``). It never imports the serving module, and it is not a
script: serve it through :func:`widgets.serve.serve`, which also installs the server hooks the
security model needs (:mod:`widgets.dashboard.security`).

The page has one tab per lab — Training, Spectra, Fine-tuning, Rich/lazy, Unlearning
(:mod:`widgets.dashboard.labs`) — plus Records; or, with an experiment file, the stages its
``experiment()`` returns (:mod:`widgets.dashboard.experiment`) plus Records. Each tab builds its stage
the first time the session opens it (in a worker thread: the page stays responsive, other sessions are
not blocked), and shows it with ``widgets.view(stage)`` — the same monitor as in a notebook.

Safety for a shared server (details in ``docs/dashboard.md``): nothing typed is evaluated; at most
``max_running`` trainings run at once across all sessions (:class:`~widgets.dashboard.slots.RunSlots`,
enforced in the training loop itself) with server limits on batch size and steps; each session reads and
writes files only in its own folder (:class:`~widgets.dashboard.files.SessionFiles`); closing the page
stops the session's trainings and frees their slots at once; pages show no server paths or tracebacks.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import partial

import panel as pn
import param

from widgets.dashboard.files import SessionFiles, public_message
from widgets.dashboard.labs import LABS
from widgets.dashboard.records import RecordsTab
from widgets.dashboard.slots import RunSlots
from widgets.resources import Alert, Markdown

log = logging.getLogger("workbench.dashboard")

__all__ = ["DashboardConfig", "DashboardSession", "RunSlots", "CONFIG", "SLOTS", "create_app", "session_view"]


class DashboardConfig(param.Parameterized):
    """Settings of a served dashboard (``workbench serve --set NAME=VALUE``; ``WORKBENCH_*`` set some defaults)."""

    model = param.String(default=os.environ.get("WORKBENCH_MODEL", "gpt2-1m"), doc="Preset of every lab's model.")
    dataset = param.String(default="stories", doc="Built-in dataset of the Training and Spectra runs.")
    n_docs = param.Integer(default=int(os.environ.get("WORKBENCH_N_DOCS", "300")), bounds=(10, None),
                           doc="Training documents of the Training and Spectra runs (small: ready in seconds).")
    batch_size = param.Integer(default=8, bounds=(1, 64), doc="Default batch size of the runs.")
    max_steps = param.Integer(default=500, bounds=(1, None), doc="Default length of Start (Training, Spectra).")
    probe_every = param.Integer(default=10, bounds=(1, None), doc="Steps between probe measurements (spectra, intruders).")
    pretrain_steps = param.Integer(default=200, bounds=(1, None),
                                   doc="Pre-training steps of the base of the Fine-tuning and Unlearning tabs (cached).")
    finetune_docs = param.Integer(default=300, bounds=(10, None), doc="`recipes` documents of the Fine-tuning tab.")
    finetune_steps = param.Integer(default=150, bounds=(1, None), doc="Default length of each fine-tuning.")
    init_hidden = param.Integer(default=32, bounds=(2, 512), doc="RNN width of the Rich/lazy tab's init lab.")
    init_steps = param.Integer(default=100, bounds=(1, None), doc="Training steps per point of the init lab.")
    facts_entities = param.Integer(default=20, bounds=(10, None), doc="Fictitious people of the Unlearning benchmark.")
    facts_steps = param.Integer(default=100, bounds=(1, None), doc="Fine-tuning steps of its target/oracle (cached).")
    unlearn_method = param.String(default="npo", doc="Unlearning method of the Unlearning tab (METHODS registry).")
    unlearn_steps = param.Integer(default=30, bounds=(1, None), doc="Default length of the unlearning run.")
    max_running = param.Integer(default=int(os.environ.get("WORKBENCH_MAX_RUNNING", "2")), bounds=(1, None),
                                doc="Trainings allowed to run at once across all sessions.")
    max_batch_size = param.Integer(default=64, bounds=(1, None), doc="Largest batch size a visitor may train with.")
    max_steps_limit = param.Integer(default=20_000, bounds=(1, None), doc="Largest max_steps a visitor may train to.")
    results_dir = param.String(default=os.environ.get("WORKBENCH_RESULTS", "results/dashboard"),
                               doc="Each session saves in <results_dir>/sessions/<id>/; records in results_dir are "
                                   "readable by every session.")
    period = param.Integer(default=300, bounds=(50, None), doc="Plot refresh period (ms).")


CONFIG = DashboardConfig()
SLOTS = RunSlots(CONFIG.max_running, CONFIG.max_batch_size, CONFIG.max_steps_limit)

# What a visitor may change on a plain run, with bounds that keep a shared CPU server usable.
VISITOR_PARAMS = ["optimizer", "lr", "schedule", "warmup_steps", "weight_decay", "grad_clip", "batch_size",
                  "max_steps", "seed", "log_every", "eval_every", "label"]
VISITOR_WIDGETS = {
    "batch_size": {"type": pn.widgets.IntSlider, "start": 1, "end": 64},
    "max_steps": {"type": pn.widgets.IntInput, "start": 1, "end": 20_000},
    "log_every": {"type": pn.widgets.IntInput, "start": 1, "end": 1000},
    "eval_every": {"type": pn.widgets.IntInput, "start": 0, "end": 5000},
    "warmup_steps": {"type": pn.widgets.IntInput, "start": 0, "end": 20_000},
}


def view_options(stage, files: SessionFiles, config: DashboardConfig) -> dict:
    """Keywords of ``widgets.view(stage, …)`` on a shared server: checkpoints only inside the session's folder,
    and for a training stage only the visitor-safe parameters as controls (``device`` is never offered)."""
    if not hasattr(stage, "save_checkpoint"):
        return {}
    editable = list(stage.config()) if hasattr(stage, "config") else []
    widgets = {k: v for k, v in VISITOR_WIDGETS.items() if k in editable}
    if "batch_size" in widgets:
        widgets["batch_size"] = {**widgets["batch_size"], "end": config.max_batch_size}
    return dict(save_root=str(files.folder), parameters=[p for p in VISITOR_PARAMS if p in editable], widgets=widgets,
                period=config.period)


def show(stage, files: SessionFiles, config: DashboardConfig):
    """``widgets.view(stage)`` sandboxed to the session's folder; refuses a view that cannot be sandboxed."""
    import widgets

    options = view_options(stage, files, config)
    try:
        return widgets.view(stage, **options)
    except TypeError as exc:
        if not options or "unexpected keyword" not in str(exc):
            raise
    try:  # a view without control/period options: keep the one that matters
        return widgets.view(stage, save_root=options["save_root"])
    except TypeError:
        log.error("The view of %s accepts no save_root; not served (its checkpoint button would write anywhere).",
                  type(stage).__name__)
        raise TypeError(f"The dashboard cannot confine the view of a {type(stage).__name__} to this session's "
                        f"folder, so it does not serve it; ask the view's author to accept save_root.") from None


class Tab:
    """One lazily built tab: a container that fills the first time the tab is opened."""

    def __init__(self, title: str, intro: str, build, first_time: str = ""):
        self.title, self.intro, self.build, self.first_time = title, intro, build, first_time
        self.container = pn.Column(sizing_mode="stretch_width", name=title)
        self.started = False
        self.stages: dict = {}
        self.views: list = []
        self.tools: dict = {}  # further panels of the tab (e.g. the Unlearning tab's Relearn), by title


class DashboardSession:
    """One browser session's page: its tabs, stages, views and folder; :meth:`close` ends its trainings."""

    def __init__(self, config: DashboardConfig = CONFIG, slots: RunSlots | None = None, experiment=None,
                 session_id: str | None = None):
        self.config, self.slots, self.experiment = config, slots or SLOTS, experiment
        self.files = SessionFiles(config.results_dir, session_id)
        self.doc = pn.state.curdoc if pn.state.curdoc is not None and pn.state.curdoc.session_context else None
        self.closed = False
        self._lock = threading.Lock()
        if experiment is None:
            self.tabs = [Tab(lab.title, lab.intro, partial(lab.build, config, self.slots), lab.first_time)
                         for lab in LABS.values()]
        else:
            self.tabs = [Tab(experiment.path.stem, f"Your experiment `{experiment.name}`: the stages its "
                             f"`experiment()` returned, yours alone for this browser session.", experiment.build)]
        self.records = RecordsTab(self)
        self.tabs.append(Tab("Records", "Save the records of this session's stages, open and compare saved ones.",
                             lambda: {}))
        self.widget = pn.Tabs(*[(t.title, t.container) for t in self.tabs], dynamic=True, sizing_mode="stretch_width")
        self.widget.param.watch(lambda event: self.open_tab(event.new), "active")
        where = (f"`{experiment.name}`" if experiment else "the workbench labs")
        self.header = Markdown(
            f"**workbench** · {where}, each tab yours alone for this browser session (built when you first open "
            f"it). At most {self.slots.max_running} trainings run at once on this server. Files you save stay in "
            f"your session's own folder.", sizing_mode="stretch_width")
        self.layout = pn.Column(self.header, self.widget, sizing_mode="stretch_width")
        self.layout.session = self  # for tests and embedding
        self.open_tab(0)

    # ------------------------------------------------------------------ stages
    @property
    def stages(self) -> dict:
        """Every stage built so far, by ``"tab / label"``."""
        return {(f"{t.title} / {label}" if len(t.stages) > 1 else t.title): stage
                for t in self.tabs for label, stage in t.stages.items()}

    def open_tab(self, index: int) -> None:
        """Build tab ``index`` if it was never opened (in a worker thread inside a server session)."""
        tab = self.tabs[index]
        if tab.started or self.closed:
            return
        tab.started = True
        if tab.title == "Records":
            tab.container[:] = [Markdown(tab.intro), self.records]
            self.records.refresh()
            return
        note = f" {tab.first_time}" if tab.first_time else ""
        tab.container[:] = [Markdown(f"{tab.intro}\n\n*Building this tab's stage…{note}*", sizing_mode="stretch_width")]
        if self.doc is None:  # a notebook or a test: build now
            self._present(tab, *self._build(tab))
            return
        threading.Thread(target=self._build_then_present, args=(tab,), name=f"dashboard-build-{tab.title}",
                         daemon=True).start()

    def _build(self, tab: Tab):
        try:
            return tab.build(), None
        except Exception as exc:  # noqa: BLE001 - shown as one line; the log keeps the traceback
            log.error("Building the %s tab failed", tab.title, exc_info=exc)
            return None, exc

    def _build_then_present(self, tab: Tab) -> None:
        stages, error = self._build(tab)
        try:
            self.doc.add_next_tick_callback(partial(self._present_in_doc, tab, stages, error))
        except Exception:  # noqa: BLE001 - the session was destroyed while its tab was building
            log.info("Session %s went away while its %s tab was building.", self.files.session_id, tab.title)

    def _present_in_doc(self, tab: Tab, stages, error) -> None:
        from panel.io.state import set_curdoc

        with set_curdoc(self.doc):
            self._present(tab, stages, error)

    def _present(self, tab: Tab, stages: dict | None, error: BaseException | None) -> None:
        """Show the built stages (in the session's thread): guard each, then ``widgets.view`` it."""
        if self.closed:
            return
        items = [Markdown(tab.intro, sizing_mode="stretch_width")]
        try:
            if error is not None:
                raise error
            shown = []
            for label, stage in stages.items():
                self.slots.guard(stage)
                view = show(stage, self.files, self.config)
                tab.stages[label] = stage
                tab.views.append(view)
                shown.append((label, view))
            if tab.title == "Unlearning":
                from widgets.dashboard.relearn import RelearnPanel

                tab.tools["Relearn"] = RelearnPanel(self, tab, stages["unlearn"])
                shown.append(("Relearn", tab.tools["Relearn"]))
            items.append(shown[0][1] if len(shown) == 1 else pn.Tabs(*shown, dynamic=True, sizing_mode="stretch_width"))
        except Exception as exc:  # noqa: BLE001
            if error is None:
                log.error("Showing the %s tab failed", tab.title, exc_info=exc)
            items.append(Alert(public_message(exc, self.files.results_dir, os.getcwd()), alert_type="danger",
                               sizing_mode="stretch_width"))
        tab.container[:] = items

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """The page is gone: stop every training of this session and free its slots now (idempotent)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for tab in self.tabs:
            for stage in tab.stages.values():
                if hasattr(stage, "stop"):
                    stage.stop(wait=False)
                self.slots.release(stage)
            for view in tab.views:
                stop = getattr(view, "stop_polling", None)
                if callable(stop):
                    try:
                        stop()
                    except Exception:  # noqa: BLE001 - the session is going away anyway
                        log.debug("stop_polling failed", exc_info=True)
        self.records.close()
        log.info("Session %s closed: its trainings were stopped.", self.files.session_id)


def _serve_stylesheets_locally() -> None:
    """Tell this session's document, before any model is built, that Panel's CSS is served by this server.

    Panel points each stylesheet at the CDN until the page is rendered, then rewrites it to the server's
    ``static/`` path (``server_html_page_for_session``). Its stylesheet objects are shared between sessions,
    so while a second visitor's page was being built, models added to the first page (a lazily built tab)
    went out pointing at cdn.holoviz.org: unreachable on an offline machine (the browser logged failed
    requests). With the served path set from the start, no session ever points anywhere but here.
    """
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return
    from panel.io.resources import LOCAL_DIST

    rel = pn.state.rel_path
    doc.template_variables.setdefault("dist_url", f"{rel}/{LOCAL_DIST}" if rel else LOCAL_DIST)


def create_app(config: DashboardConfig = CONFIG, slots: RunSlots | None = None, experiment=None) -> pn.viewable.Viewable:
    """Build one session's page; inside a server session, closing the page ends its trainings at once."""
    _serve_stylesheets_locally()
    session = DashboardSession(config, slots, experiment)
    if session.doc is not None:
        from widgets.dashboard.security import on_connection_lost

        on_connection_lost(session.doc, session.close)
        pn.state.on_session_destroyed(lambda _context: session.close())
    return session.layout


def session_view(stage, config: DashboardConfig = CONFIG, slots: RunSlots | None = None) -> pn.viewable.Viewable:
    """One stage as a served session shows it (capped, sandboxed); ``.monitor`` is its view (tests, benchmarks)."""
    _serve_stylesheets_locally()
    slots = slots or SLOTS
    slots.guard(stage)
    files = SessionFiles(config.results_dir)
    view = show(stage, files, config)
    layout = pn.Column(view, sizing_mode="stretch_width")
    layout.monitor = view
    return layout
