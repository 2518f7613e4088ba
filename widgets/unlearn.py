"""Views of the unlearning lab: live forget-vs-retain curves with a Relearn button, and the trade-off
of several methods on one plot.

>>> import widgets
>>> view = widgets.view(unlearn_run)     # UnlearnMonitor: training monitor + forget/retain + Relearn  # doctest: +SKIP
>>> TradeoffView(results)                # results: xr.Dataset over `method` (evaluate() outputs)      # doctest: +SKIP

The monitor polls ``run.history.rows_since(cursor)`` from a periodic callback and sends the
``UnlearnProbe`` columns (``forget_prob``, ``retain_prob``, ``forget_quality``, ``general_prob``, …) into
bounded ``Buffer`` streams; the retain-vs-forget trajectory is a ``Pipe`` of all points so far. The
Relearn button runs :func:`workbench.unlearn.relearn_attack` on a *copy* of the current model (refused
while the run trains) and shows the before/after table; the Weights button shows the relative change,
effective rank of ΔW and intruders per matrix since unlearning began (:func:`workbench.unlearn.update_summary`
against π_ref). Nothing here computes science: probes, evals
and the attack live in :mod:`workbench.unlearn`.
"""

from __future__ import annotations

import math

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
import xarray as xr
from holoviews.streams import Buffer, Pipe

from workbench.unlearn import Unlearn, UnlearnProbe, relearn_attack, update_summary

from .monitor import TrainingMonitor, error_text
from .registry import register_view
from .resources import Markdown

hv.renderer("bokeh")

CURVES = ("forget_prob", "retain_prob", "forget_quality", "general_prob", "forget_truth")


class UnlearnMonitor(pn.viewable.Viewer):
    """Training monitor + forget/retain curves + retain-vs-forget trajectory + Relearn attack."""

    run = param.ClassSelector(class_=Unlearn, doc="The unlearning run shown.")
    period = param.Integer(default=400, bounds=(50, None), doc="Poll period (ms).")
    buffer_length = param.Integer(default=2000, bounds=(10, None), doc="Points kept per curve.")
    relearn_examples = param.Integer(default=4, bounds=(1, None), doc="Relearn: forget facts the attacker trains on.")
    relearn_steps = param.Integer(default=10, bounds=(1, None), doc="Relearn: attack steps.")
    relearn_lr = param.Number(default=1e-3, bounds=(0, None), doc="Relearn: attack learning rate.")

    def __init__(self, run: Unlearn, **params):
        super().__init__(run=run, **params)
        self.monitor = TrainingMonitor(run, period=self.period)
        self._cursor = 0
        self._buffers = {name: Buffer(pd.DataFrame({"step": np.array([], "int64"), name: np.array([], "float64")}),
                                      length=self.buffer_length, index=False) for name in CURVES}
        self._points: list[tuple[int, float, float]] = []
        self.trajectory = Pipe(data=pd.DataFrame({"forget_prob": [], "retain_prob": [], "step": []}))
        self.probe = next((p for p in run.probes if isinstance(p, UnlearnProbe)), None)
        self.message = Markdown("", sizing_mode="stretch_width")
        self.relearn_button = pn.widgets.Button(label="Relearn attack", color="warning", disabled=self.probe is None,
                                                description="Fine-tune a copy on a few forget facts; see what comes back")
        self.relearn_button.on_click(self._on_relearn)
        self.relearn_result = pn.pane.DataFrame(pd.DataFrame(), sizing_mode="stretch_width")
        self.relearn_controls = pn.Param(self.param, parameters=["relearn_examples", "relearn_steps", "relearn_lr"],
                                         show_name=False)
        self.last_relearn: xr.Dataset | None = None
        self.weights_button = pn.widgets.Button(label="Weights: what moved", color="default",
                                                description="Relative change, effective rank of ΔW and intruders per matrix")
        self.weights_button.on_click(self._on_weights)
        self.weights = Pipe(data=pd.DataFrame({"matrix": [], "relative_change": [], "delta_effective_rank": [],
                                               "intruders": []}))
        self.last_weights: xr.Dataset | None = None
        if self.probe is None:
            self.message.object = "Attach an `UnlearnProbe(bench, oracle=…)` to the run for forget/retain curves and Relearn."
        self._layout = pn.Column(
            self.monitor,
            pn.Row(pn.pane.HoloViews(self._curves(), sizing_mode="stretch_width", height=280),
                   pn.pane.HoloViews(self._trajectory(), sizing_mode="stretch_width", height=280),
                   sizing_mode="stretch_width"),
            pn.Row(pn.Column(self.relearn_controls, self.relearn_button, width=300), self.relearn_result,
                   sizing_mode="stretch_width"),
            pn.Row(self.weights_button, pn.pane.HoloViews(self._weights_plot(), sizing_mode="stretch_width", height=300),
                   sizing_mode="stretch_width"),
            self.message, sizing_mode="stretch_width")
        self._callback = pn.state.add_periodic_callback(self.poll, period=self.period)

    def __panel__(self):
        return self._layout

    def _curves(self):
        overlay = None
        for name in CURVES:
            dmap = hv.DynamicMap(lambda data, _n=name: hv.Curve(data, "step", _n, label=_n).redim(**{_n: "value"}),
                                 streams=[self._buffers[name]])
            overlay = dmap if overlay is None else overlay * dmap
        return overlay.opts(hv.opts.Curve(framewise=True, tools=["hover"]),
                            hv.opts.Overlay(title="forget vs retain (UnlearnProbe)", legend_position="right",
                                            responsive=True, height=260))

    def _trajectory(self):
        def element(data):
            return (hv.Path([data[["forget_prob", "retain_prob"]].to_numpy()], ["forget_prob", "retain_prob"])
                    * hv.Scatter(data, "forget_prob", ["retain_prob", "step"]))

        return hv.DynamicMap(element, streams=[self.trajectory]).opts(
            hv.opts.Scatter(tools=["hover"], size=6, framewise=True), hv.opts.Path(framewise=True),
            hv.opts.Overlay(title="trade-off trajectory (→ forget less, ↑ keep more)", responsive=True, height=260))

    def _weights_plot(self):
        def element(data):
            return hv.Bars(data, "matrix", ["relative_change", "delta_effective_rank", "intruders"])

        return hv.DynamicMap(element, streams=[self.weights]).opts(hv.opts.Bars(
            xrotation=70, tools=["hover"], framewise=True, responsive=True, height=280,
            title="‖ΔW‖/‖W‖ per matrix since unlearning started (hover: effective rank of ΔW, intruders)"))

    def _on_weights(self, _event=None) -> None:
        """Compare π_ref (the model at the start) with the current model via workbench.unlearn.update_summary."""
        try:
            if self.run.running:
                raise RuntimeError("The run is training: stop it before reading its weights.")
            ds = update_summary(self.run.reference_model, self.run.model)
            self.last_weights = ds
            df = ds[["relative_change", "delta_effective_rank", "intruders"]].to_dataframe().reset_index()
            self.weights.send(df.sort_values("relative_change", ascending=False))
        except Exception as exc:  # noqa: BLE001
            self.message.object = f"⚠ {error_text(exc)}"

    @property
    def buffers(self) -> dict[str, Buffer]:
        return dict(self._buffers)

    def poll(self) -> int:
        """New history rows → curve buffers and the trajectory pipe. Never raises (shown as the message)."""
        try:
            rows, self._cursor = self.run.history.rows_since(self._cursor)
            points: dict[str, list] = {}
            for row in rows:
                for name in CURVES:
                    v = row.get(name)
                    if isinstance(v, (int, float)) and math.isfinite(v):
                        points.setdefault(name, []).append((row["step"], float(v)))
                if "forget_prob" in row and "retain_prob" in row:
                    self._points.append((row["step"], row["forget_prob"], row["retain_prob"]))
            with pn.io.hold():
                for name, pts in points.items():
                    steps, vals = zip(*pts)
                    self._buffers[name].send(pd.DataFrame({"step": np.asarray(steps, "int64"),
                                                           name: np.asarray(vals, "float64")}))
                if points.get("forget_prob"):
                    s, f, r = zip(*self._points)
                    self.trajectory.send(pd.DataFrame({"forget_prob": f, "retain_prob": r, "step": s}))
            return len(rows)
        except Exception as exc:  # noqa: BLE001 - keeps the periodic callback alive
            self.message.object = f"⚠ {error_text(exc)}"
            return 0

    def _on_relearn(self, _event=None) -> None:
        try:
            if self.run.running:
                raise RuntimeError("The run is training: stop it before attacking its weights.")
            self.message.object = "Relearning attack running…"
            ds = relearn_attack(self.run.model, self.probe.bench, forget_fraction=self.probe.forget_fraction,
                                n_examples=min(self.relearn_examples, len(self.probe.forget_ids)),
                                steps=self.relearn_steps, lr=self.relearn_lr, rouge=False, device=str(self.run.torch_device))
            self.last_relearn = ds
            table = pd.DataFrame({sub: [float(ds.get(f"prob_{sub}_before", np.nan)), float(ds.get(f"prob_{sub}_after", np.nan))]
                                  for sub in ("attacked", "heldout", "forget")}, index=["before", "after"])
            self.relearn_result.object = table
            self.message.object = (f"Relearned on {ds.attrs['n_examples']} facts for {ds.attrs['steps']} steps: forget "
                                   f"answer probability {table.loc['before', 'forget']:.3f} → {table.loc['after', 'forget']:.3f}.")
        except Exception as exc:  # noqa: BLE001
            self.message.object = f"⚠ {error_text(exc)}"

    def stop_polling(self) -> None:
        for cb in (self._callback,):
            try:
                cb.stop()
            except Exception:  # noqa: BLE001
                pass
        self.monitor.stop_polling()


@register_view(Unlearn)
def unlearn_monitor(run: Unlearn, **kwargs) -> UnlearnMonitor:
    return UnlearnMonitor(run, **kwargs)


class TradeoffView(pn.viewable.Viewer):
    """All methods on one plot: forget (x) against retained utility (y), one labelled point per method.

    ``results`` is an ``xr.Dataset`` over dim ``method`` with scalar metrics per method (the scalars of
    :func:`workbench.unlearn.evaluate`, concatenated); ``update(results)`` replaces the points.
    """

    x = param.String(default="forget_quality", doc="Metric on the x axis.")
    y = param.String(default="model_utility", doc="Metric on the y axis.")

    def __init__(self, results: xr.Dataset | None = None, **params):
        super().__init__(**params)
        self.pipe = Pipe(data=pd.DataFrame({"method": [], self.x: [], self.y: []}))
        self.message = Markdown("")
        plot = hv.DynamicMap(lambda data: hv.Points(data, [self.x, self.y], ["method"])
                             * hv.Labels(data, [self.x, self.y], "method"), streams=[self.pipe])
        self.pane = pn.pane.HoloViews(plot.opts(hv.opts.Points(size=10, tools=["hover"], framewise=True),
                                                hv.opts.Labels(yoffset=0.02),
                                                hv.opts.Overlay(title=f"{self.y} vs {self.x}", responsive=True,
                                                                height=320)), sizing_mode="stretch_width")
        self._layout = pn.Column(self.pane, self.message, sizing_mode="stretch_width")
        if results is not None:
            self.update(results)

    def update(self, results: xr.Dataset) -> None:
        missing = [v for v in (self.x, self.y) if v not in results]
        if missing or "method" not in results.dims:
            self.message.object = f"⚠ results need dim 'method' and variables {missing or [self.x, self.y]}."
            return
        df = pd.DataFrame({"method": [str(m) for m in results.method.values],
                           self.x: results[self.x].values.astype(float), self.y: results[self.y].values.astype(float)})
        self.pipe.send(df)
        self.message.object = ""

    def __panel__(self):
        return self._layout
