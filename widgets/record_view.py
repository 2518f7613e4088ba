"""RecordView: open saved records, plot any variable against ``step``, compare records on the same axes.

>>> import widgets, workbench
>>> rv = widgets.view(workbench.open_record("results/00_tour.nc"))   # doctest: +SKIP
>>> rv = RecordView(records={"lr=1e-3": ds_a, "lr=3e-3": ds_b})     # doctest: +SKIP
>>> rv.open("results/other.nc")                                   # add one more by path  # doctest: +SKIP

* A variable over ``step`` only is a line; every open record is a curve on the same axes.
* A variable over ``step`` and one more dim (``matrix`` for per-matrix metrics) is a heatmap
  (that dim × step), one per record; a ``matrix`` picker also overlays that one row across records.
  Further dims (``index`` of a spectrum) are fixed by a position slider.
* **Seed bands**: with ``over="seed"`` (the default when the open records differ in seed), runs that differ
  only in ``over`` are pooled into one mean ± 95 % CI band per group of the other differing config keys
  (:mod:`widgets.bands`, statistics by :func:`workbench.groups.summarize`); a table lists the config keys
  that differ. ``smoothing`` and ``logy`` are the live plots' (:class:`widgets.series.TimeSeries`) controls:
  the same debiased EMA, applied to each run before the statistics.
* A record being written by another process (``open_record(path, follow=True)``) is shown live by
  :class:`widgets.live_view.LiveRecordView` (``widgets.view(live)``).

Plots are drawn from the records' own ``xarray`` variables; the only statistics are :mod:`workbench.groups`'. Opening a
path goes through :func:`workbench.open_record`, so a missing or damaged file is a one-line message.
With ``root`` set (a public dashboard), only paths inside that folder can be opened.
"""

from __future__ import annotations

from pathlib import Path

import holoviews as hv
import pandas as pd
import hvplot.xarray  # noqa: F401  (registers .hvplot on xarray objects)
import panel as pn
import param
import xarray as xr

from workbench import groups
from workbench.errors import ConfigError
from workbench.record import meta, open_record

from . import bands, live_view  # noqa: F401  (live_view registers the view of a followed record)
from .monitor import error_text, load_notebook_extension, resolve_inside
from .registry import register_view
from .resources import Alert, Markdown
from .series import TimeSeries

hv.renderer("bokeh")


def record_label(ds: xr.Dataset, fallback: str) -> str:
    """A short name for a record in legends: its label, else its run id, else ``fallback``."""
    info = meta(ds)
    return str(info.get("label") or info.get("run_id") or fallback)


def step_variables(ds: xr.Dataset) -> list[str]:
    """Data variables that have a ``step`` dim (the ones this view can plot)."""
    return sorted(name for name, var in ds.data_vars.items() if "step" in var.dims and var.dtype.kind in "fiub")


class RecordView(pn.viewable.Viewer):
    """Plots of one or more records; see the module docstring."""

    records = param.Dict(default={}, doc="Open records by label (label → xarray.Dataset).")
    variable = param.Selector(default=None, objects=[], allow_None=True, doc="Variable to plot against step.")
    root = param.String(default=None, allow_None=True, doc="If set, only paths inside this folder can be opened.")
    height = param.Integer(default=320, doc="Plot height in pixels.")
    over = param.Selector(default="seed", objects=[bands.NONE, "seed"], check_on_set=False,
                          doc="Pool runs that differ only in this config key into a mean ± 95% CI band ('none': "
                              "one curve per record).")
    smoothing = param.Number(default=0.0, bounds=TimeSeries.param.smoothing.bounds, step=0.05,
                             doc=TimeSeries.param.smoothing.doc)
    logy = param.Boolean(default=False, doc=TimeSeries.param.logy.doc)

    def __init__(self, record: xr.Dataset | None = None, **params):
        super().__init__(**params)
        self.path_input = pn.widgets.TextInput(label="Record path", placeholder="results/run.nc", sizing_mode="stretch_width")
        self.open_button = pn.widgets.Button(label="Open", color="primary")
        self.open_button.on_click(lambda _e: self._open_from_input())
        self.clear_button = pn.widgets.Button(label="Clear", color="default")
        self.clear_button.on_click(lambda _e: self.clear())
        self.variable_select = pn.widgets.Select.from_param(self.param.variable, label="Variable")
        self.row_select = pn.widgets.Select(label="Row (compare across records)", options=[], visible=False)
        self.position = pn.widgets.IntSlider(label="Position", start=0, end=1, value=0, visible=False)
        self.alert = Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self.listing = Markdown("", sizing_mode="stretch_width")
        self.over_select = pn.widgets.Select.from_param(self.param.over, label="Band over (mean ± 95% CI)")
        self.smoothing_slider = pn.widgets.FloatSlider.from_param(self.param.smoothing)
        self.logy_box = pn.widgets.Checkbox.from_param(self.param.logy, label="log y")
        self.config_table = pn.pane.DataFrame(None, visible=False, sizing_mode="stretch_width", max_height=240)
        self._keys: list[str] = []
        self.plot = pn.pane.HoloViews(None, sizing_mode="stretch_width", min_height=self.height, linked_axes=False)
        self.row_select.param.watch(lambda _e: self._redraw(), "value")
        self.position.param.watch(lambda _e: self._redraw(), "value")
        if record is not None:
            self.add(record)  # refreshes through the `records` watcher
        else:
            self._refresh()

    # ------------------------------------------------------------------ records
    def add(self, record: xr.Dataset, label: str | None = None) -> str:
        """Add an open record (``xarray.Dataset``); returns the label it is shown under."""
        if not isinstance(record, xr.Dataset):
            raise ConfigError(f"A record is an xarray.Dataset (from workbench.open_record or run.record), got {type(record).__name__}.")
        label = label or record_label(record, f"record {len(self.records) + 1}")
        base, i = label, 2
        while label in self.records:
            label, i = f"{base} ({i})", i + 1
        self.records = {**self.records, label: record}
        return label

    def open(self, path: str) -> str:
        """Open the record at ``path`` (inside ``root`` when set) and add it; returns its label."""
        path = str(path).strip()
        if not path:
            raise ConfigError("Give the path of a saved record (a .nc file or a .zarr folder).")
        target = resolve_inside(self.root, path) if self.root is not None else Path(path).expanduser()
        ds = open_record(target)
        return self.add(ds, record_label(ds, target.stem))

    def clear(self) -> None:
        self.records = {}

    def _open_from_input(self) -> None:
        self.alert.visible = False
        try:
            self.open(self.path_input.value)
        except Exception as exc:  # noqa: BLE001 - a message, not a traceback
            self.alert.object = error_text(exc)
            self.alert.visible = True

    @param.depends("records", watch=True)
    def _refresh(self) -> None:
        names = sorted({v for ds in self.records.values() for v in step_variables(ds)})
        self.param.variable.objects = names
        if self.variable not in names:
            self.variable = "loss" if "loss" in names else (names[0] if names else None)
        lines = [f"- **{label}**: {ds.sizes.get('step', 0)} steps, {len(step_variables(ds))} variables"
                 for label, ds in self.records.items()]
        self.listing.object = "\n".join(lines) or "*No record open.*"
        keys = bands.differing_keys(self.records)
        options = [bands.NONE] + [k for k in keys if k not in bands.NOT_GROUPING]
        appeared = "seed" in options and "seed" not in self._keys
        self._keys = keys
        self.param.over.objects = options
        if self.over not in options or (appeared and self.over == bands.NONE):
            self.over = "seed" if "seed" in options else bands.NONE
        table = groups.config_table(list(self.records.values())) if keys else None
        if table is not None:
            table.index = list(self.records)  # the labels the legend uses (which is what `label` says)
            table = table.drop(columns=[c for c in bands.NOT_GROUPING if c in table.columns])
        self.config_table.object = table
        self.config_table.visible = table is not None
        self._on_variable()

    # ------------------------------------------------------------------ plotting
    def _arrays(self) -> dict[str, xr.DataArray]:
        return {label: ds[self.variable] for label, ds in self.records.items() if self.variable in ds.data_vars}

    @param.depends("variable", watch=True)
    def _on_variable(self) -> None:
        arrays = self._arrays()
        extra = [d for d in next(iter(arrays.values())).dims if d != "step"] if arrays else []
        if extra:
            rows = sorted({str(v) for da in arrays.values() for v in da[extra[0]].values})
            self.row_select.options = rows
            self.row_select.label = f"{extra[0]} (compare across records)"
            self.row_select.visible = True
        else:
            self.row_select.visible = False
        if len(extra) > 1:
            size = max(int(da.sizes[extra[1]]) for da in arrays.values())
            self.position.label = extra[1]
            self.position.end = max(size - 1, 1)
            self.position.visible = True
        else:
            self.position.visible = False
        self._redraw()

    def curves(self, row: str | None = None) -> dict[str, xr.DataArray]:
        """One curve over ``step`` per record: the variable, or its ``row`` (e.g. a matrix) at the chosen
        position; each carries its record's attributes (its config: what bands group by)."""
        out = {}
        for label, da in self._arrays().items():
            extra = [d for d in da.dims if d != "step"]
            if extra:
                if row is None:
                    continue
                labels = [str(v) for v in da[extra[0]].values]
                if row not in labels:
                    continue
                da = da.isel({extra[0]: labels.index(row)})
                if len(extra) > 1:
                    da = da.isel({d: min(self.position.value, da.sizes[d] - 1) for d in extra[1:]})
            out[label] = da.copy().assign_attrs(**self.records[label].attrs)
        return out

    def band_data(self, row: str | None = None) -> dict[str, xr.DataArray]:
        """Per group of runs: the ``summarize`` statistics (``stat`` × ``step``) the bands draw; ``{}`` when
        ``over`` is 'none'."""
        if self.over == bands.NONE:
            return {}
        return bands.band_data(self.curves(row), self.over, float(self.smoothing))

    def _lines(self, row: str | None, title: str):
        """The curves of every record (or the bands of their groups), smoothed and on a log axis as asked."""
        var = self.variable
        if self.over != bands.NONE:
            layers = bands.band_elements(self.band_data(row), self.over, self.logy, value=var)
        else:
            beta, layers = float(self.smoothing), []
            for label, da in self.curves(row).items():
                da = da.dropna("step")
                frame = pd.DataFrame({"step": da.step.values, var: da.values})
                if beta > 0:
                    layers.append(hv.Curve(frame, "step", var, label=label).opts(alpha=0.3))
                    frame = frame.assign(**{var: bands.smoothed(da, beta).values})
                layers.append(hv.Curve(frame, "step", var, label=f"{label} (smoothed)" if beta > 0 else label))
        return hv.Overlay(layers).opts(
            hv.opts.Curve(logy=self.logy, responsive=True, height=self.height, tools=["hover"], show_grid=True),
            hv.opts.Area(logy=self.logy, responsive=True, height=self.height),
            hv.opts.Overlay(title=title, legend_position="top_right", responsive=True, height=self.height))

    def figure(self):
        """The HoloViews object for the current variable (what the plot pane shows)."""
        arrays = self._arrays()
        if not arrays:
            return None
        var = self.variable
        first = next(iter(arrays.values()))
        extra = [d for d in first.dims if d != "step"]
        if not extra:
            return self._lines(None, var)
        row_dim = extra[0]
        panels = []
        for label, da in arrays.items():
            if len(extra) > 1:  # fix every further dim at the chosen position
                da = da.isel({d: min(self.position.value, da.sizes[d] - 1) for d in extra[1:]})
            panels.append(da.transpose(row_dim, "step").hvplot.heatmap(
                x="step", y=row_dim, C=var, title=f"{label}: {var}", responsive=True, height=self.height,
                cmap="viridis", colorbar=True))
        if self.row_select.value is not None and self.curves(self.row_select.value):
            panels.append(self._lines(self.row_select.value, f"{var} [{self.row_select.value}]"))
        return hv.Layout(panels).cols(1)

    @param.depends("over", "smoothing", "logy", watch=True)
    def _on_view_option(self) -> None:
        if hasattr(self, "plot"):  # not while the constructor sets parameters
            self._redraw()

    def _redraw(self) -> None:
        try:
            self.plot.object = self.figure()
        except Exception as exc:  # noqa: BLE001
            self.alert.object = error_text(exc)
            self.alert.visible = True

    def __panel__(self):
        return pn.Row(
            pn.Column(pn.Row(self.path_input, self.open_button, align="end", sizing_mode="stretch_width"),
                      self.alert, self.listing, self.variable_select, self.row_select, self.position,
                      self.over_select, self.smoothing_slider, self.logy_box, self.clear_button, width=340),
            pn.Column(self.plot, self.config_table, sizing_mode="stretch_width"), sizing_mode="stretch_width")

    def _repr_mimebundle_(self, include=None, exclude=None):
        load_notebook_extension()
        return super()._repr_mimebundle_(include, exclude)


@register_view(xr.Dataset)
def record_view(record: xr.Dataset, **kwargs) -> RecordView:
    """``widgets.view(ds)`` for a record (``run.record`` or :func:`workbench.open_record`)."""
    return RecordView(record, **kwargs)
