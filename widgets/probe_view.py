"""Probe views by shape: whatever a probe logs is shown by the shape of what it logs, with no per-probe code.

* scalar columns → :class:`~widgets.series.TimeSeries`, several per plot where they share units
  (:func:`unit_of`: ``*_loss``, ``*_accuracy``, ``*_prob``, alignments, relative quantities);
* ``step × matrix`` arrays → one :class:`~widgets.heatmap.MatrixHeatmap` per view (a quantity picker
  when the probe logs several, a matrix picker for one matrix's curve);
* ``step × matrix × index`` arrays → :class:`~widgets.heatmap.SpectrumSnapshot` (with a step slider).

A :class:`ProbeView` learns its names as they appear in the run's history (columns and arrays that
appear later get their plot then). Which names belong to which probe: ``probe.logged_names`` when the
core provides it, else every name that no other part of the page claims (exact for one probe).

A probe class may register a richer view with ``register_view(ProbeClass)`` — e.g. :class:`Sharpness`
below adds the 2/lr edge-of-stability line to its ``sharpness`` plot; none is required.

>>> import widgets                                    # doctest: +SKIP
>>> widgets.view(probe)      # or display the probe: its live panel   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable

import panel as pn
import param

from workbench.errors import ConfigError
from workbench.probes import Probe

from .heatmap import MatrixHeatmap, SpectrumSnapshot
from .registry import register_view
from .resources import Alert, Markdown, load_notebook_extension
from .series import TimeSeries
from .streaming import Feed, Poller, error_text

#: Columns that are bookkeeping, never a plot of their own.
NOT_PLOTTED = frozenset({"step", "wall_time", "diverged"})


def unit_of(name: str) -> str:
    """The unit group of a scalar column: columns of one group share a plot.

    >>> [unit_of(n) for n in ("val_loss", "loss", "test_accuracy", "forget_prob", "rep_cka", "sharpness")]
    ['loss', 'loss', 'accuracy', 'probability', 'alignment', 'sharpness']
    """
    if name == "loss" or name.endswith("_loss"):
        return "loss"
    if name.endswith("accuracy"):
        return "accuracy"
    if name.endswith("_prob"):
        return "probability"
    if name.endswith("alignment") or name.endswith("alignment_init") or name.endswith("_cka"):
        return "alignment"
    if name.startswith("relative_") or "_rel_" in name:
        return "relative"
    return name


def probe_names(probe) -> set[str] | None:
    """The names ``probe`` has logged, if the core says so (``Probe.logged_names``); None when unknown."""
    names = getattr(probe, "logged_names", None)
    return set(names) if names is not None else None


class ProbeView(Poller, pn.viewable.Viewer):
    """Live plots of the history names a predicate selects, each by its shape; see the module docstring."""

    period = param.Integer(default=400, bounds=(50, None), doc="Poll every this many ms (when standalone).")
    max_ui_share = param.Number(default=0.05, bounds=(0.001, 1), doc="Share of time spent re-rendering plots while training.")
    title = param.String(default="")

    def __init__(self, run, wants: Callable[[str], bool] | None = None, references: dict | None = None,
                 parts: list | None = None, poll: bool = True, **params):
        super().__init__(**params)
        self.source = self.run = run
        self.wants = wants or (lambda name: name not in NOT_PLOTTED)
        self.references = dict(references or {})  # column -> {label: fn(row)}
        self.feed = Feed(run.history)
        self.series: dict[str, TimeSeries] = {}  # by unit group
        self.arrays: dict[str, MatrixHeatmap | SpectrumSnapshot] = {}
        self.extra_parts = list(parts or [])  # richer views' own plots: add_rows(rows), flush(), clear()
        self.alert = Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self.placeholder = Markdown("*No measurement yet: plots appear as the probe logs.*")
        self.plots = pn.Column(self.placeholder, sizing_mode="stretch_width")
        header = [Markdown(f"#### {self.title}")] if self.title else []
        self._layout = pn.Column(*header, self.alert, self.plots, *self.extra_parts, sizing_mode="stretch_width")
        self._rows: list[dict] = []
        if poll:
            self.start_polling()

    def __panel__(self):
        return self._layout

    def _repr_mimebundle_(self, include=None, exclude=None):
        load_notebook_extension()
        return super()._repr_mimebundle_(include, exclude)

    # ------------------------------------------------------------------ reading
    def read(self) -> int:
        rows = self.feed.rows()
        if self.feed.reset:
            self.feed.reset = False
            for part in self.parts():
                part.clear()
        for row in rows:
            for name, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and self._wanted(name):
                    self._series_for(name)
        for part in [*self.series.values(), *self.extra_parts]:
            part.add_rows(rows)
        n = len(rows)
        for name in self.feed.array_names():
            if not self._wanted(name):
                continue
            items = self.feed.arrays(name)
            for step, da in items:
                part = self.arrays.get(name) or self._array_for(name, da)
                if part is not None:
                    part.add(step, da, name)
            n += len(items)
        return n

    def _wanted(self, name: str) -> bool:
        return name not in NOT_PLOTTED and bool(self.wants(name))

    def _series_for(self, name: str) -> TimeSeries:
        unit = unit_of(name)
        if unit not in self.series:
            refs = self.references.get(name, {})
            title = name.replace("_", " ") if unit == name else unit
            self.series[unit] = ts = TimeSeries([name], title=title, markers=True, references=refs, lazy=True)
            self._show(ts)
        else:
            self.series[unit].add_column(name)
        return self.series[unit]

    def _array_for(self, name: str, da):
        if da.ndim == 1:
            shared = next((p for p in self.arrays.values() if isinstance(p, MatrixHeatmap)), None)
            if shared is not None:  # one heatmap per view, with a quantity picker
                shared.add_quantity(name)
                self.arrays[name] = shared
                return shared
            part = MatrixHeatmap(name)
        elif da.ndim == 2:
            part = SpectrumSnapshot(name)
        else:
            return None  # no generic picture of 3+ dims per step; the record view slices them
        self.arrays[name] = part
        self._show(part)
        return part

    def _show(self, part) -> None:
        objects = [o for o in self.plots.objects if o is not self.placeholder]
        self.plots.objects = [*objects, part]

    def part(self, name: str):
        """The plot showing history name ``name`` (a TimeSeries or a heatmap/snapshot), or None."""
        if name in self.arrays:
            return self.arrays[name]
        return next((ts for ts in self.series.values() if name in ts.buffers), None)

    # ------------------------------------------------------------------ drawing
    def parts(self) -> list:
        arrays = list({id(p): p for p in self.arrays.values()}.values())  # a heatmap holds several names
        return [*self.series.values(), *arrays, *self.extra_parts]

    def refresh(self) -> None:
        if self.alert.visible:
            self.alert.visible = False

    def show_error(self, exc) -> None:
        self.alert.object = error_text(exc)
        self.alert.visible = True


def probe_view(probe: Probe, run=None, exclude: Callable[[str], bool] | None = None, **kwargs) -> ProbeView:
    """The view of one attached probe: its names when the core lists them (``probe.logged_names``), else
    every name that is not the run's own nor ``exclude``-d (another panel shows it)."""
    run = run if run is not None else getattr(probe, "run", None)
    if run is None:
        raise ConfigError(f"This {type(probe).__name__} is not attached to a run yet (or does not say which): "
                          f"run.add_probe(probe) first, then widgets.view(probe, run=run).")

    def wants(name: str) -> bool:
        names = probe_names(probe)
        if names is not None:
            return name in names
        return name not in run_columns(run) and not (exclude is not None and exclude(name))

    kwargs.setdefault("title", type(probe).__name__)
    return ProbeView(run, wants=wants, **kwargs)


def run_columns(run) -> list[str]:
    """Columns the run logs at every step (its own metrics, not a probe's): keys of its step rows."""
    keys: list[str] = []
    for row in run.history.rows_since(max(0, len(run.history) - 50))[0]:
        if "lr" in row and "grad_norm" in row:
            keys += [k for k in row if k not in keys]
    return keys or ["loss", "lr", "grad_norm"]


register_view(Probe)(probe_view)


def _sharpness_view(probe, **kwargs) -> ProbeView:
    """Sharpness with its 2/lr edge-of-stability line (gradient descent is unstable above it)."""
    refs = {"sharpness": {"2/lr (edge of stability)": lambda row: 2.0 / row["lr"] if row.get("lr") else None}}
    return probe_view(probe, references=refs, **kwargs)


try:  # the regime lab is part of the core; registering here keeps the view next to the generic one
    from workbench.regime import Sharpness

    register_view(Sharpness)(_sharpness_view)
except ImportError:  # pragma: no cover
    pass
