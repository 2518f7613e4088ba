"""Per-matrix arrays over steps: the one matrix × step heatmap and the one spectrum snapshot view.

* :class:`MatrixHeatmap` — arrays logged with dims ``(matrix,)`` (or any one dim) at each measured
  step, as a heatmap matrix × step, plus a matrix picker that draws that one matrix's curve over steps.
  One heatmap holds every such array of a probe, with a quantity picker: a spectra probe logs a dozen
  per-matrix quantities, and a dozen stacked heatmaps (two figures each) made an unreadable page that a
  browser on a busy machine took minutes to re-render.
* :class:`SpectrumSnapshot` — an array with dims ``(matrix, index)`` (singular values, …) at each
  measured step: the chosen matrix at the chosen step (a step slider; it follows the latest step while
  left at the end), with the first measurement — W0's spectrum when the probe measured at step 0 —
  overlaid, on log–log axes.

Both keep the last ``max_steps`` measurements, receive entries with :meth:`add` (from the owner's poll)
and update their plots *in place* at :meth:`flush` through ``Pipe`` streams; the plot is put in the
layout when the first measurement arrives (see :mod:`widgets.streaming` for why).

>>> import xarray as xr
>>> hm = MatrixHeatmap("intruders")
>>> hm.add(0, xr.DataArray([0.0, 1.0], dims="matrix", coords={"matrix": ["a", "b"]})); hm.flush()
>>> hm.frame()[["step", "matrix", "intruders"]].values.tolist()
[[0, 'a', 0.0], [0, 'b', 1.0]]
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from holoviews.streams import Pipe

from .resources import Markdown


def short_name(matrix: str) -> str:
    """``transformer.h.3.attn.c_attn.weight`` → ``h.3.attn.c_attn`` (axis labels stay readable)."""
    return str(matrix).replace("transformer.", "").replace("model.layers.", "L").removesuffix(".weight")


class _Snapshots(pn.viewable.Viewer):
    """Shared bookkeeping: the last ``max_steps`` entries by step, a placeholder until the first one."""

    title = param.String(default="")
    height = param.Integer(default=320)
    max_steps = param.Integer(default=200, bounds=(2, None), doc="Most recent measured steps kept.")

    def __init__(self, name: str, **params):
        super().__init__(**params)
        self.var = name
        self.entries: dict[int, object] = {}
        self._dirty = False
        self.placeholder = Markdown(f"*{self.title or name}: waiting for the first measurement…*")
        self.layout = pn.Column(self.placeholder, sizing_mode="stretch_width")

    def add(self, step: int, da, name: str | None = None) -> None:
        """Keep measurement ``da`` of step ``step`` (``name``: which quantity, for views that hold several)."""
        self.entries[int(step)] = da
        for old in sorted(self.entries)[: max(0, len(self.entries) - self.max_steps)]:
            del self.entries[old]
        self._dirty = True

    def clear(self) -> None:
        self.entries.clear()
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        first = self.layout.objects and self.layout.objects[0] is self.placeholder
        if first and not self.entries:
            return
        self._send()
        if first:
            self.layout.objects = self._plots()

    def __panel__(self):
        return self.layout


class MatrixHeatmap(_Snapshots):
    """Matrix × step heatmap of per-matrix arrays (a quantity picker when there are several), and one
    matrix's curve (a matrix picker)."""

    cmap = param.String(default="viridis")
    quantity = param.Selector(default=None, objects=[], allow_None=True, doc="The per-matrix quantity shown.")
    matrix = param.Selector(default=None, objects=[], allow_None=True, doc="The matrix whose curve is drawn.")

    def __init__(self, name: str, **params):
        super().__init__(name, **params)
        self.by_quantity: dict[str, dict[int, object]] = {}
        self.heat_pipe = Pipe(data=None)
        self.curve_pipe = Pipe(data=None)
        self.quantity_select = None
        self.add_quantity(name)
        self.param.watch(lambda *_: self._send_curve(), ["matrix"])
        self.param.watch(self._on_quantity, ["quantity"])

    @property
    def quantities(self) -> list[str]:
        return list(self.by_quantity)

    def add_quantity(self, name: str) -> None:
        """Hold one more per-matrix quantity (the first one added is shown until another is picked)."""
        if name in self.by_quantity:
            return
        self.by_quantity[name] = {} if self.by_quantity else self.entries
        self.param.quantity.objects = self.quantities
        if self.quantity is None:
            self.quantity = name
        if self.quantity_select is not None:
            self.quantity_select.visible = len(self.by_quantity) > 1

    def add(self, step: int, da, name: str | None = None) -> None:
        name = name or self.var
        self.add_quantity(name)
        entries = self.by_quantity[name]
        entries[int(step)] = da
        for old in sorted(entries)[: max(0, len(entries) - self.max_steps)]:
            del entries[old]
        self._dirty = self._dirty or name == self.var

    def clear(self) -> None:
        for entries in self.by_quantity.values():
            entries.clear()
        self._dirty = True

    def _on_quantity(self, event) -> None:
        if event.new is None or event.new not in self.by_quantity:
            return
        self.var, self.entries = event.new, self.by_quantity[event.new]
        self._dirty = True
        if self.layout.objects and self.layout.objects[0] is not self.placeholder:
            self.flush()  # the plots are on the page: show the picked quantity now

    def frame(self, quantity: str | None = None) -> pd.DataFrame:
        """The long table (step, matrix, value) the heatmap draws (matrix names shortened); ``quantity``:
        another held quantity than the one shown."""
        var = quantity or self.var
        parts = []
        for step, da in sorted(self.by_quantity.get(var, {}).items()):
            dim = da.dims[0]
            parts.append(pd.DataFrame({"step": step, "matrix": [short_name(m) for m in da[dim].values],
                                       var: np.asarray(da.values, dtype="float64")}))
        if not parts:
            return pd.DataFrame({"step": np.array([], "int64"), "matrix": np.array([], object),
                                 var: np.array([], "float64")})
        return pd.concat(parts, ignore_index=True)

    def curve_frame(self) -> pd.DataFrame:
        """Steps and values of the picked matrix (what its curve draws)."""
        frame = self.frame()
        return frame[frame.matrix == self.matrix][["step", self.var]].reset_index(drop=True)

    def _send(self) -> None:
        frame = self.frame()
        names = list(dict.fromkeys(frame.matrix))
        if names != self.param.matrix.objects:
            self.param.matrix.objects = names
        if self.matrix not in names and names:
            self.matrix = names[0]  # sends the curve through the watcher
        self.heat_pipe.send(frame)
        self._send_curve()

    def _send_curve(self) -> None:
        if self.entries:
            self.curve_pipe.send(self.curve_frame())

    def _plots(self):
        def value_of(data) -> str:  # the quantity in this frame (the picker may have changed it)
            return next((c for c in data.columns if c not in ("step", "matrix")), self.var)

        def heat(data):
            var = value_of(data)
            return hv.HeatMap(data, ["step", "matrix"], var).opts(title=self.title or var.replace("_", " "))

        def curve(data):
            var = value_of(data)
            return (hv.Curve(data, "step", var) * hv.Scatter(data, "step", var)).opts(
                title=f"{self.title or var.replace('_', ' ')}: one matrix")

        heat_map = hv.DynamicMap(heat, streams=[self.heat_pipe]).opts(
            hv.opts.HeatMap(cmap=self.cmap, colorbar=True, tools=["hover"], responsive=True, height=self.height,
                            framewise=True, xlabel="step", fontsize={"yticks": 7}))
        curves = hv.DynamicMap(curve, streams=[self.curve_pipe]).opts(
            hv.opts.Curve(framewise=True, responsive=True, height=220, tools=["hover"], show_grid=True),
            hv.opts.Scatter(framewise=True, size=5))
        self.quantity_select = pn.widgets.Select.from_param(self.param.quantity, label="quantity",
                                                           visible=len(self.by_quantity) > 1, sizing_mode="stretch_width")
        picker = pn.widgets.Select.from_param(self.param.matrix, label="matrix", sizing_mode="stretch_width")
        return [self.quantity_select,
                pn.pane.HoloViews(heat_map, sizing_mode="stretch_width", height=self.height, linked_axes=False),
                picker, pn.pane.HoloViews(curves, sizing_mode="stretch_width", height=220, linked_axes=False)]


FIRST, SHOWN = "first measured step (W0 at step 0)", "chosen step"


class SpectrumSnapshot(_Snapshots):
    """σ (or any matrix × index array) of a chosen matrix at a chosen step, the first step overlaid."""

    matrix = param.Selector(default=None, objects=[], allow_None=True, doc="The matrix shown.")
    position = param.Integer(default=0, bounds=(0, None), doc="Which kept step is shown (0 = oldest).")
    follow = param.Boolean(default=True, doc="Show the latest step as it arrives.")

    def __init__(self, name: str, **params):
        super().__init__(name, **params)
        self.pipe = Pipe(data=None)
        self.slider = pn.widgets.IntSlider(label="measurement", start=0, end=1, value=0, sizing_mode="stretch_width")
        self.step_text = Markdown("", margin=(0, 10))
        self.slider.param.watch(self._on_slider, "value")
        self.param.watch(lambda *_: self._send_curves(), ["matrix", "position"])

    @property
    def steps(self) -> list[int]:
        return sorted(self.entries)

    def _on_slider(self, event) -> None:
        self.follow = event.new >= len(self.steps) - 1
        self.position = event.new

    def curves(self) -> pd.DataFrame:
        """Long table (index from 1, value, which) of what the plot draws; zeros and NaN dropped (log axes)."""
        steps = self.steps
        if not steps or self.matrix is None:
            return pd.DataFrame({"index": np.array([], "int64"), self.var: np.array([], "float64"), "which": []})
        shown = steps[min(self.position, len(steps) - 1)]
        first = steps[0]
        parts = []
        for step, which in ((first, FIRST), (shown, SHOWN)):
            da = self.entries[step]
            names = [short_name(m) for m in da[da.dims[0]].values]
            if self.matrix not in names:
                continue
            values = np.asarray(da.isel({da.dims[0]: names.index(self.matrix)}).values, dtype="float64")
            keep = np.isfinite(values) & (values > 0)
            parts.append(pd.DataFrame({"index": np.arange(1, len(values) + 1)[keep], self.var: values[keep],
                                       "which": which}))
        return pd.concat(parts, ignore_index=True)

    def _send(self) -> None:
        steps = self.steps
        latest = self.entries[steps[-1]]
        names = [short_name(m) for m in latest[latest.dims[0]].values]
        if names != self.param.matrix.objects:
            self.param.matrix.objects = names
        if self.matrix not in names:
            self.matrix = names[0]
        self.slider.end = max(len(steps) - 1, 1)
        if self.follow:
            self.position = len(steps) - 1
            self.slider.value = self.position
        self._send_curves()

    def _send_curves(self) -> None:
        if self.entries:
            steps = self.steps
            self.step_text.object = f"step **{steps[min(self.position, len(steps) - 1)]}** (measured {steps[0]}…{steps[-1]})"
            self.pipe.send(self.curves())

    def _plots(self):
        label = self.title or self.var.replace("_", " ")

        def element(data):
            return hv.Overlay([hv.Curve(data[data.which == w], "index", self.var, label=w) for w in (FIRST, SHOWN)])

        plot = hv.DynamicMap(element, streams=[self.pipe]).opts(
            hv.opts.Curve(logx=True, logy=True, tools=["hover"], responsive=True, height=self.height, framewise=True,
                          show_grid=True, xlabel="index (1 = largest)"),
            hv.opts.Overlay(title=label, legend_position="top_right"))
        picker = pn.widgets.Select.from_param(self.param.matrix, label="matrix", sizing_mode="stretch_width")
        return [pn.Row(picker, self.slider, self.step_text, sizing_mode="stretch_width"),
                pn.pane.HoloViews(plot, sizing_mode="stretch_width", height=self.height, linked_axes=False)]
