"""The Records tab: save this session's records, open and compare saved ones, follow runs being written.

Save: pick one of the session's stages (every tab opened so far) and a file name; the record goes to the
session's own folder (:class:`~widgets.dashboard.files.SessionFiles`), ``.nc`` or ``.zarr``. Open: pick a
record from the list — this session's files and the operator's shared records in the results folder,
never another session's — to add it to the comparison (``widgets.view(record)``: every record is a curve
on the same axes; runs that differ only in their seed are drawn as mean ± 95 % CI bands, with a table of
the config keys that differ). Follow: a run that another process is writing into one of those folders
(``workbench train --out results/run.nc``) is listed as ``run.nc (live)``; Follow shows it live
(:class:`widgets.live_view.LiveRecordView`) until it ends, then says how it ended. Visitors pick names from
lists; a typed file name is only ever resolved inside the session's folder.
"""

from __future__ import annotations

import logging
import os

import panel as pn

from workbench.errors import ConfigError

from widgets.resources import Alert, Markdown

from .files import RECORD_SUFFIXES, SESSIONS, public_message

log = logging.getLogger("workbench.dashboard")


def stage_record(stage):
    """A stage's record as an ``xarray.Dataset`` (a run's ``record``, an init lab's ``points()``)."""
    if hasattr(stage, "record"):
        return stage.record
    if hasattr(stage, "points"):
        return stage.points()
    raise ConfigError(f"A {type(stage).__name__} keeps no record to save.")


LIVE = " (live)"


def live_records(files) -> dict[str, os.PathLike]:
    """Runs being written where this session may read (its folder; the shared results but not other
    sessions'): ``{"run.nc (live)": record path}`` for every live journal (:mod:`workbench.live`)."""
    from workbench.live import SUFFIX, record_path

    found = {}
    for base, own in ((files.folder, True), (files.results_dir, False)):
        if not base.is_dir():
            continue
        for journal in sorted(base.rglob("*" + SUFFIX)):
            rel = journal.relative_to(base)
            if not own and rel.parts[0] == SESSIONS:
                continue
            target = record_path(journal)
            if target.suffix in RECORD_SUFFIXES and journal.is_file():
                found[files.display(target) + LIVE] = target
    return found


class RecordsTab(pn.viewable.Viewer):
    """Save / open / compare records of one session (see the module docstring)."""

    def __init__(self, session, **params):
        super().__init__(**params)
        self.session = session
        self.stage_select = pn.widgets.Select(label="Stage", options=[], width=260)
        self.name_input = pn.widgets.TextInput(label="Save as", value="run.nc", width=220)
        self.save_button = pn.widgets.Button(label="Save record", color="primary")
        self.record_select = pn.widgets.Select(label="Saved records", options=[], width=320)
        self.open_button = pn.widgets.Button(label="Open (compare)", color="default")
        self.refresh_button = pn.widgets.Button(label="Refresh lists", color="default")
        self.follow_button = pn.widgets.Button(label="Follow (live)", color="default",
                                               description="Show a run being written, live, until it ends")
        self.alert = Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self.info = Alert("", alert_type="success", visible=False, sizing_mode="stretch_width")
        self.compare = pn.Column(Markdown("*Open a record to plot it; open more to compare them.*"),
                                 sizing_mode="stretch_width")
        self.view = None
        self.following: list = []  # LiveRecordViews, newest first
        self.followed = pn.Column(sizing_mode="stretch_width")
        self.save_button.on_click(lambda _e: self._guarded(self.save))
        self.open_button.on_click(lambda _e: self._guarded(self.open))
        self.refresh_button.on_click(lambda _e: self.refresh())
        self.follow_button.on_click(lambda _e: self._guarded(self.follow))
        self._layout = pn.Column(
            pn.Row(self.stage_select, self.name_input, self.save_button, align="end"),
            pn.Row(self.record_select, self.open_button, self.follow_button, self.refresh_button, align="end"),
            self.alert, self.info, self.followed, self.compare, sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout

    def refresh(self) -> None:
        """Re-list the session's stages and the records it may open."""
        stages = list(self.session.stages)
        self.stage_select.options = stages
        if stages and self.stage_select.value not in stages:
            self.stage_select.value = stages[0]
        records = [*self.session.files.records(), *live_records(self.session.files)]
        self.record_select.options = records
        if records and self.record_select.value not in records:
            self.record_select.value = records[-1]

    def save(self) -> str:
        """Save the selected stage's record under the typed name (in the session's folder)."""
        label = self.stage_select.value
        stages = self.session.stages
        if label not in stages:
            raise ConfigError("Open a lab tab first: its stage's record can then be saved here.")
        name = (self.name_input.value or "").strip()
        if not name.endswith(RECORD_SUFFIXES):
            raise ConfigError(f"A record file name ends with .nc or .zarr, got {name!r}.")
        from workbench import record

        path = self.session.files.resolve(name)
        record.save(stage_record(stages[label]), path)
        shown = self.session.files.saved(path)
        self.refresh()
        self.record_select.value = shown
        return f"Saved the record of {label} as {shown} (in your session's folder)."

    def _path(self, label: str):
        """The path of a listed record or live run (the only way a visitor names a file)."""
        if not label:
            raise ConfigError("No saved record yet: save one above first (or Refresh lists).")
        if label.endswith(LIVE):
            live = live_records(self.session.files)
            if label not in live:
                raise ConfigError(f"{label} is no longer being written: Refresh lists and open its saved record.")
            return live[label]
        return self.session.files.opened(label)

    def follow(self) -> str:
        """Follow the selected record live (a run being written; a saved record shows as ended)."""
        label = self.record_select.value
        from workbench.live import LiveRecord

        from widgets.live_view import LiveRecordView

        live = LiveRecord(self._path(label))
        view = LiveRecordView(live, title=label)
        self.following.insert(0, view)
        self.followed[:] = self.following
        return f"Following {label}: {live.status} at step {live.global_step}."

    def open(self) -> str:
        """Add the selected saved record (or what a live run published so far) to the comparison."""
        label = self.record_select.value
        from workbench import open_record
        from workbench.live import LiveRecord

        path = self._path(label)
        ds = LiveRecord(path).record if label.endswith(LIVE) else open_record(path)
        if self.view is None:
            import widgets

            self.view = widgets.view(ds, root=str(self.session.files.folder))
            self.compare[:] = [self.view]
            return f"Opened {label}."
        shown = self.view.add(ds, label=label)
        return f"Opened {label} as {shown}."

    def _guarded(self, action) -> None:
        self.alert.visible = self.info.visible = False
        try:
            text = action()
        except Exception as exc:  # noqa: BLE001 - one line for the visitor; details in the log
            log.info("Records action failed", exc_info=exc)
            self.alert.object = public_message(exc, self.session.files.results_dir, os.getcwd())
            self.alert.visible = True
        else:
            self.info.object = text
            self.info.visible = True

    def close(self) -> None:
        for view in [self.view, *self.following]:
            stop = getattr(view, "stop_polling", None)
            if callable(stop):
                stop()
