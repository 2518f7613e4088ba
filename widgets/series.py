"""Time series a researcher can read: several columns on one plot, smoothing, log-y, step or wall time.

:class:`TimeSeries` is one plot of one or more scalar history columns that share units (``loss`` with
every ``*_loss`` evaluation, a probe's ``*_alignment`` columns …). Each column streams through its own
bounded ``Buffer`` (new points only reach the browser), with

* **smoothing** — a debiased exponential moving average (as TensorBoard's: ``s_t = β s_{t-1} + (1-β) x_t``,
  shown as ``s_t / (1 - β^t)`` so the start is not pulled towards 0); the raw curve stays, dimmed;
* **log-y** and the **x axis** as ``step`` or ``wall_time`` (seconds since the run started, a history
  column; runs that do not record it fall back to ``step``);
* an autoscale that shows a **constant series**: a flat line gets a y range around its value instead of
  the degenerate range Bokeh draws as −1…1 (a constant learning rate looked like a line at 0);
* sparse columns (measured every N steps) drawn with markers.

The owner feeds rows with :meth:`add_rows` (any thread-free place: the poll) and calls :meth:`flush`.

>>> ts = TimeSeries(["loss"], title="loss")
>>> ts.add_rows([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}])
2
>>> ts.flush(); list(ts.buffers["loss"].data["loss"])
[2.0, 1.0]
"""

from __future__ import annotations

import functools
import math
import operator
from collections import deque

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from holoviews.streams import Buffer

from .resources import Markdown
from .streaming import empty_frame

X_AXES = ("step", "wall_time")


def debiased_ema(values: np.ndarray, beta: float) -> np.ndarray:
    """Exponential moving average with the start-up bias removed (``beta`` = 0: the values themselves).

    >>> debiased_ema(np.array([1.0, 1.0, 1.0]), 0.9).round(6).tolist()
    [1.0, 1.0, 1.0]
    """
    out = np.empty(len(values))
    s, w = 0.0, 0.0
    for i, v in enumerate(values):
        s = beta * s + (1 - beta) * v
        w = beta * w + (1 - beta)
        out[i] = s / w if w > 0 else v
    return out


def padded_range(values: np.ndarray) -> tuple[float, float] | None:
    """A y range that shows ``values``; for a constant series, ±10 % around it (±1 around 0)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    lo, hi = float(finite.min()), float(finite.max())
    if hi > lo:
        return None  # the plot's own autoscale is right
    pad = abs(lo) * 0.1 or 1.0
    return lo - pad, hi + pad


class TimeSeries(pn.viewable.Viewer):
    """One plot of scalar columns over step (or wall time); see the module docstring."""

    smoothing = param.Number(default=0.0, bounds=(0, 0.999), step=0.05, doc="EMA weight β of the smoothed curve (0: off).")
    logy = param.Boolean(default=False, doc="Logarithmic y axis.")
    x = param.Selector(default="step", objects=list(X_AXES), doc="x axis: optimizer step or wall time (s).")
    title = param.String(default="")
    height = param.Integer(default=220)
    buffer_length = param.Integer(default=2000, bounds=(10, None), doc="Points kept per column (oldest dropped).")
    markers = param.Boolean(default=False, doc="Mark every point (sparse measurements).")
    references = param.Dict(default={}, doc="Derived curves: label → function(row) -> value or None (e.g. 2/lr).")
    lazy = param.Boolean(default=False, doc="Put the plot (and its controls) on the page with its first points.")

    def __init__(self, columns, **params):
        super().__init__(**params)
        self.columns: list[str] = []
        self.buffers: dict[str, Buffer] = {}
        self._raw: dict[str, deque] = {}
        self._pending: dict[str, list] = {}
        self._wall: dict[int, float] = {}
        self._rebuild = False
        self.pane = None
        for c in columns:
            self.add_column(c)
        for label in self.references:
            self.add_column(label)
        self.pane = pn.pane.HoloViews(self._figure(), sizing_mode="stretch_width", height=self.height, linked_axes=False)
        # lazy: the plot joins the page with its first points (as the heatmaps do). A Buffer-fed plot first
        # rendered empty *inside a layout update* (a probe's first column, from the poll) drew nothing in a
        # notebook (observed in JupyterLab; the core plots, rendered with the page, stream fine).
        self.layout = pn.Column(Markdown(f"*{self.title}: waiting for the first measurement…*"),
                                sizing_mode="stretch_width") if self.lazy else None
        self.param.watch(self._on_view_option, ["logy", "x"])
        self.param.watch(self._on_smoothing, ["smoothing"])

    # ------------------------------------------------------------------ data in
    def add_column(self, name: str) -> None:
        """Plot one more column (the figure is rebuilt at the next flush)."""
        if name in self.buffers:
            return
        self.columns.append(name)
        self.buffers[name] = Buffer(empty_frame(name, "smooth", "wall_time"), length=self.buffer_length, index=False)
        self._raw[name] = deque(maxlen=self.buffer_length)
        self._rebuild = self.pane is not None

    def add_rows(self, rows: list[dict]) -> int:
        """Keep the finite values of this plot's columns from history rows (sent at :meth:`flush`)."""
        n = 0
        for row in rows:
            step = row.get("step")
            wall = row.get("wall_time")
            if isinstance(wall, (int, float)) and math.isfinite(wall):
                self._wall[step] = float(wall)
            values = {c: row.get(c) for c in self.columns if c not in self.references}
            values.update({label: _call(f, row) for label, f in self.references.items()})
            for name, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._pending.setdefault(name, []).append((int(step), float(v)))
                    n += 1
        return n

    def clear(self) -> None:
        for name, buf in self.buffers.items():
            buf.clear()
            self._raw[name].clear()
        self._pending.clear()
        self._wall.clear()

    def flush(self) -> None:
        """Send pending points to the plot (one Buffer update per column that has new points)."""
        if self._rebuild:
            self._rebuild = False
            self.pane.object = self._figure()
        pending, self._pending = self._pending, {}
        beta = float(self.smoothing)
        for name, pts in pending.items():
            raw = self._raw[name]
            steps = np.array([p[0] for p in pts], dtype="int64")
            values = np.array([p[1] for p in pts])
            smooth = self._continue_ema(raw, values, beta)
            raw.extend(zip(steps.tolist(), values.tolist(), smooth.tolist()))
            self.buffers[name].send(self._frame(name, steps, values, smooth))
        if self.layout is not None and pending and self.layout.objects and self.layout.objects[0] is not self.pane \
                and not isinstance(self.layout.objects[0], pn.Row):
            self.layout.objects = [self.controls(), self.pane]

    def _continue_ema(self, raw: deque, values: np.ndarray, beta: float) -> np.ndarray:
        # Continue the debiased EMA from the stored (biased) state: recompute over the kept points.
        if beta == 0 or not len(raw):
            return debiased_ema(values, beta)
        old = np.array([r[1] for r in raw])
        return debiased_ema(np.concatenate([old, values]), beta)[len(old):]

    def _frame(self, name: str, steps, values, smooth) -> pd.DataFrame:
        wall = np.array([self._wall.get(int(s), np.nan) for s in steps], dtype="float64")
        return pd.DataFrame({"step": np.asarray(steps, "int64"), name: np.asarray(values, "float64"),
                             "smooth": np.asarray(smooth, "float64"), "wall_time": wall})

    def _on_smoothing(self, *_):
        """Recompute every smoothed curve over the kept points (one full resend per column)."""
        beta = float(self.smoothing)
        for name, raw in self._raw.items():
            if not raw:
                continue
            steps = np.array([r[0] for r in raw], dtype="int64")
            values = np.array([r[1] for r in raw])
            smooth = debiased_ema(values, beta)
            self._raw[name] = deque(zip(steps.tolist(), values.tolist(), smooth.tolist()), maxlen=self.buffer_length)
            self.buffers[name].clear()
            self.buffers[name].send(self._frame(name, steps, values, smooth))
        self.pane.object = self._figure()  # the raw curve dims (or not)

    def _on_view_option(self, *_):
        self.pane.object = self._figure()  # an axis type change needs a new figure (a click, not a poll)

    # ------------------------------------------------------------------ plot
    @property
    def has_wall_time(self) -> bool:
        return bool(self._wall)

    def _figure(self):
        x = self.x if (self.x == "step" or self.has_wall_time) else "step"
        smoothing = float(self.smoothing) > 0
        layers = []
        for name in self.columns:
            def element(data, _name=name, _x=x):
                rng = padded_range(data[_name].to_numpy()) if len(data) else None
                return hv.Curve(data, _x, hv.Dimension(_name, range=rng) if rng else _name, label=_name)

            def smoothed(data, _name=name, _x=x):
                return hv.Curve(data, _x, ("smooth", _name), label=f"{_name} (smoothed)")

            def dots(data, _name=name, _x=x):
                return hv.Scatter(data, _x, _name, label=_name)

            buf = self.buffers[name]
            raw = hv.DynamicMap(element, streams=[buf]).opts(alpha=0.3 if smoothing else 1.0)
            layers.append(raw)
            if smoothing:
                layers.append(hv.DynamicMap(smoothed, streams=[buf]))
            if self.markers or name in self.references:
                layers.append(hv.DynamicMap(dots, streams=[buf]).opts(size=5))
        overlay = functools.reduce(operator.mul, layers)  # DynamicMap * DynamicMap: one DynamicMap of overlays
        xlabel = "wall time (s)" if x == "wall_time" else "step"
        return overlay.opts(
            hv.opts.Curve(framewise=True, tools=["hover"], show_grid=True, logy=self.logy, responsive=True,
                          height=self.height, xlabel=xlabel, title=self.title),
            hv.opts.Scatter(framewise=True, tools=["hover"], logy=self.logy, responsive=True, height=self.height),
            hv.opts.Overlay(title=self.title, legend_position="top_right", responsive=True, height=self.height,
                            show_legend=len(self.columns) > 1 or smoothing))

    def controls(self):
        """Smoothing, log-y and x-axis widgets for this plot."""
        return pn.Row(pn.widgets.FloatSlider.from_param(self.param.smoothing, width=160),
                      pn.widgets.Checkbox.from_param(self.param.logy, label="log y", width=70),
                      pn.widgets.RadioButtonGroup.from_param(self.param.x, width=150))

    def __panel__(self):
        return self.layout if self.layout is not None else self.pane


def _call(f, row):
    try:
        return f(row)
    except Exception:  # noqa: BLE001 - a derived value that cannot be computed for this row is skipped
        return None
