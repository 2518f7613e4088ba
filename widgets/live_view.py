"""LiveRecordView: follow a record another process is writing, with the plots of an in-process run.

>>> import widgets, workbench
>>> live = workbench.open_record("runs/run.nc", follow=True)   # a `workbench train --out runs/run.nc` job  # doctest: +SKIP
>>> widgets.view(live)                                         # or display `live` in a cell                 # doctest: +SKIP

The view polls (:class:`~widgets.streaming.Poller`): each poll reads what the writer published since the
last one (:meth:`workbench.live.LiveRecord.update`, a read of the journal's new bytes) into the follower's
``history``, and a :class:`~widgets.probe_view.ProbeView` over that history draws every column and array by
its shape — the same plots a live run's probes get, with no code per variable. A status line says
``running`` (step, seconds since the last publish), the outcome when the writer ends, or ``died`` when
its process is gone without one. Once the run has ended and the last rows are drawn, polling stops.
"""

from __future__ import annotations

import time

import panel as pn
import param

from workbench.live import LiveRecord

from .probe_view import ProbeView
from .registry import register_view
from .resources import Alert, Markdown, load_notebook_extension
from .streaming import Poller, error_text

STATUS_WORDS = {"running": "running", "finished": "finished", "stopped": "stopped", "diverged": "diverged",
                "error": "ended with an error", "died": "writer died"}


class LiveRecordView(Poller, pn.viewable.Viewer):
    """Status line and live plots of a :class:`~workbench.live.LiveRecord`; see the module docstring."""

    period = param.Integer(default=500, bounds=(50, None), doc="Read the journal every this many milliseconds.")
    max_ui_share = param.Number(default=0.05, bounds=(0.001, 1), doc="Share of time spent re-rendering plots while the run trains.")
    title = param.String(default="", doc="Heading (default: the record's file name).")

    def __init__(self, live: LiveRecord, poll: bool = True, **params):
        super().__init__(**params)
        self.source = self.live = live
        self.title = self.title or live.record_path.name
        self.status = Markdown(self._status_text(), sizing_mode="stretch_width")
        self.alert = Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self.plots = ProbeView(live, poll=False)
        self._layout = pn.Column(Markdown(f"#### {self.title}"), self.status, self.alert, self.plots,
                                 sizing_mode="stretch_width")
        self.poll()
        if poll and live.running:
            self.start_polling()

    def __panel__(self):
        return self._layout

    def _repr_mimebundle_(self, include=None, exclude=None):
        load_notebook_extension()
        return super()._repr_mimebundle_(include, exclude)

    # ------------------------------------------------------------------ polling
    def read(self) -> int:
        return self.live.update() + self.plots.read()

    def parts(self) -> list:
        return self.plots.parts()

    def refresh(self) -> None:
        self.status.object = self._status_text()
        if not self.live.running:
            self.stop_polling()  # the last rows were flushed by this poll (the source is no longer busy)

    def _status_text(self) -> str:
        live = self.live
        words = STATUS_WORDS.get(live.status, live.status)
        text = f"**{words}** at step {live.global_step}"
        if live.running:
            text += f" · last publish {max(0.0, time.time() - live.last_publish):.0f} s ago"
        if live.message:
            text += f" · {live.message}"
        return text

    def show_error(self, exc) -> None:
        self.alert.object = error_text(exc)
        self.alert.visible = True


@register_view(LiveRecord)
def live_record_view(live: LiveRecord, **kwargs) -> LiveRecordView:
    """``widgets.view(open_record(path, follow=True))``."""
    return LiveRecordView(live, **kwargs)
