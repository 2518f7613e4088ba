"""Views of the unlearning lab: live forget-vs-retain curves with a Relearn button, and the trade-off
of several methods on one plot.

>>> import widgets
>>> view = widgets.view(unlearn_run)     # the training monitor + the UnlearnProbe's panel + Relearn  # doctest: +SKIP
>>> TradeoffView(results)                # results: xr.Dataset over `method` (evaluate() outputs)      # doctest: +SKIP

An ``Unlearn`` run gets the one :class:`~widgets.monitor.TrainingMonitor`; its ``UnlearnProbe`` columns
(``forget_prob``, ``retain_prob``, ``forget_quality``, …) are that probe's panel, by shape, plus the
retain-vs-forget trajectory (registered for ``UnlearnProbe``). The
Relearn button runs :func:`workbench.unlearn.relearn_attack` on a *copy* of the current model (refused
while the run trains) and shows the before/after table; the Weights button shows the relative change,
effective rank of ΔW and intruders per matrix since unlearning began (:func:`workbench.spectra.what_moved`
against the W0 snapshot). Nothing here computes science: probes, evals
and the attack live in :mod:`workbench.unlearn`.
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
import xarray as xr
from holoviews.streams import Buffer, Pipe

from workbench.spectra import what_moved
from workbench.unlearn import Unlearn, UnlearnProbe, relearn_attack

from .monitor import TrainingMonitor
from .probe_view import probe_view
from .registry import register_view
from .resources import Markdown
from .streaming import empty_frame, error_text

hv.renderer("bokeh")

class Trajectory(pn.viewable.Viewer):
    """Retain (y) against forget (x) answer probability, one point per measurement (a Buffer streams them)."""

    X, Y = "forget_prob", "retain_prob"

    def __init__(self, buffer_length: int = 2000):
        super().__init__()
        self.buffer = Buffer(empty_frame(self.X, self.Y), length=buffer_length, index=False)
        self._pending: list[tuple] = []
        plot = hv.DynamicMap(lambda data: hv.Scatter(data, self.X, [self.Y, "step"]), streams=[self.buffer]).opts(
            hv.opts.Scatter(tools=["hover"], size=6, framewise=True, color="step", cmap="viridis", colorbar=True,
                            responsive=True, height=260, title="trade-off trajectory (→ forget less, ↑ keep more)"))
        self.pane = pn.pane.HoloViews(plot, sizing_mode="stretch_width", height=280, linked_axes=False)

    def add_rows(self, rows) -> None:
        self._pending += [(r["step"], r[self.X], r[self.Y]) for r in rows if self.X in r and self.Y in r]

    def flush(self) -> None:
        if self._pending:
            steps, x, y = zip(*self._pending)
            self._pending = []
            self.buffer.send(pd.DataFrame({"step": np.asarray(steps, "int64"), self.X: np.asarray(x, "float64"),
                                           self.Y: np.asarray(y, "float64")}))

    def clear(self) -> None:
        self._pending = []
        self.buffer.clear()

    def __panel__(self):
        return self.pane


@register_view(UnlearnProbe)
def unlearn_probe_view(probe: UnlearnProbe, **kwargs):
    """The probe's curves by shape (forget/retain probabilities share a plot) plus the trade-off trajectory."""
    return probe_view(probe, parts=[Trajectory()], **kwargs)


class UnlearnTools(pn.viewable.Viewer):
    """Relearn attack and "what moved" for an unlearning run (both refused while it trains)."""

    relearn_examples = param.Integer(default=4, bounds=(1, None), doc="Relearn: forget facts the attacker trains on.")
    relearn_steps = param.Integer(default=10, bounds=(1, None), doc="Relearn: attack steps.")
    relearn_lr = param.Number(default=1e-3, bounds=(0, None), doc="Relearn: attack learning rate.")

    def __init__(self, run: Unlearn, **params):
        super().__init__(**params)
        self.run = run
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
        self.weights_table = pn.pane.DataFrame(pd.DataFrame(), sizing_mode="stretch_width")
        self.last_weights: xr.Dataset | None = None
        if self.probe is None:
            self.message.object = "Attach an `UnlearnProbe(bench, oracle=…)` to the run for forget/retain curves and Relearn."
        self._layout = pn.Card(
            pn.Row(pn.Column(self.relearn_controls, self.relearn_button, width=300), self.relearn_result,
                   sizing_mode="stretch_width"),
            pn.Row(self.weights_button, self.weights_table, sizing_mode="stretch_width"),
            self.message, title="Relearn attack · what moved", sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout

    def _on_weights(self, _event=None) -> None:
        """Compare the weights at the start (the run's W0 snapshot) with the current ones (the what-moved engine)."""
        try:
            if self.run.running:
                raise RuntimeError("The run is training: stop it before reading its weights.")
            if self.run.reference is None:
                raise RuntimeError("The run has not started: take a step first, then compare.")
            ds = what_moved(self.run.reference, self.run.model, embeddings=False)
            self.last_weights = ds
            per_matrix = [v for v in ds.data_vars if ds[v].dims == ("matrix",)]
            self.weights_table.object = ds[per_matrix].to_dataframe().round(4)
        except Exception as exc:  # noqa: BLE001
            self.message.object = f"⚠ {error_text(exc)}"

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


@register_view(Unlearn)
def unlearn_monitor(run: Unlearn, **kwargs) -> TrainingMonitor:
    """The one training monitor, with the relearn attack and "what moved" below; the forget/retain curves
    and the trajectory are the UnlearnProbe's own panel."""
    kwargs.setdefault("extras", [UnlearnTools(run)])
    return TrainingMonitor(run, **kwargs)


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
