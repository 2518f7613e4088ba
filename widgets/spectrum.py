"""Spectrum views: explore singular spectra, watch effective rank and intruders live, analyse a model in one call.

>>> import widgets.spectrum as ws
>>> ws.analyse(model)                       # table + effective-rank bars + spectrum explorer   # doctest: +SKIP
>>> ws.analyse(tuned, reference=base)       # … plus intruder counts and base-vs-tuned spectra  # doctest: +SKIP

* :class:`SpectrumExplorer` — pick a matrix; its base and current singular values on log–log axes. For a run
  the base is ``run.reference`` (W0) and the current spectrum is recomputed with Refresh.
* :func:`analyse` — a :class:`SpectraReport` for a loaded model (optionally against a reference).

Live spectra of a training run are the SpectraProbe's own view, by shape (``widgets.view(probe)``:
heatmaps matrix × step of its per-matrix arrays, a spectrum snapshot of ``singular_values``; see
:mod:`widgets.probe_view`).

The science (SVDs, ranks, intruders) is all :mod:`workbench.spectra`; these classes only arrange and plot it.
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from holoviews.streams import Pipe

from workbench.spectra import compare, model_spectra, spectra_table

from .streaming import error_text
from .resources import Alert, Markdown

hv.renderer("bokeh")

_CURVE_COLUMNS = ["index", "sigma", "which"]


def _spectrum_frame(values: dict[str, np.ndarray]) -> pd.DataFrame:
    """Long table (index from 1, σ, which) for log–log curves; zeros and NaN dropped (log axes)."""
    parts = []
    for which, sv in values.items():
        sv = np.asarray(sv, dtype=float)
        keep = np.isfinite(sv) & (sv > 0)
        parts.append(pd.DataFrame({"index": np.arange(1, len(sv) + 1)[keep], "sigma": sv[keep], "which": which}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_CURVE_COLUMNS)


class SpectrumExplorer(pn.viewable.Viewer):
    """Base vs current singular values of one matrix (log–log). ``source``: a model, a Run, or a spectra Dataset."""

    matrix = param.Selector(default=None, objects=[], doc="The weight matrix shown.")

    def __init__(self, source, reference=None, **params):
        super().__init__(**params)
        from workbench.run import Run

        self.run = source if isinstance(source, Run) else None
        self.model = source.model if self.run is not None else source
        self.reference = reference if reference is not None else (self.run.reference if self.run is not None else None)
        self._current = source if hasattr(source, "data_vars") else None  # a precomputed Dataset
        self._base = reference if hasattr(reference, "data_vars") else None
        self.pipe = Pipe(data=pd.DataFrame(columns=_CURVE_COLUMNS))
        self.refresh_button = pn.widgets.Button(label="Refresh", description="Recompute the current spectra now")
        self.refresh_button.on_click(lambda _e: self.refresh())
        self.alert = Alert("", alert_type="danger", visible=False)
        self.refresh()
        self.select = pn.widgets.Select.from_param(self.param.matrix, sizing_mode="stretch_width")
        plot = hv.DynamicMap(self._plot, streams=[self.pipe])
        self._layout = pn.Column(pn.Row(self.select, self.refresh_button, align="end"), self.alert,
                                 pn.pane.HoloViews(plot, sizing_mode="stretch_width", height=320),
                                 sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout

    def _plot(self, data):
        curves = [hv.Curve(data[data.which == w], "index", "sigma", label=str(w)) for w in dict.fromkeys(data.which)]
        overlay = hv.Overlay(curves or [hv.Curve([], "index", "sigma")])
        return overlay.opts(hv.opts.Curve(logx=True, logy=True, tools=["hover"], responsive=True, height=300,
                                          framewise=True, show_grid=True, xlabel="index (1 = largest)", ylabel="σ"),
                            hv.opts.Overlay(title=str(self.matrix or ""), legend_position="top_right"))

    def refresh(self) -> None:
        """Recompute the current (and, once, the base) spectra with :func:`model_spectra` and redraw."""
        try:
            if self.model is not None and not hasattr(self.model, "data_vars"):
                self._current = model_spectra(self.model, alpha=False)
            self._ensure_base()
            names = list(self._current.matrix.values)
            self.param.matrix.objects = names
            if self.matrix not in names:
                self.matrix = names[0]
            self._send()
            self.alert.visible = False
        except Exception as exc:  # shown, never a traceback in the UI
            self.alert.object, self.alert.visible = error_text(exc), True

    def _ensure_base(self) -> None:
        if self.reference is None and self.run is not None:
            self.reference = self.run.reference  # set when the run is set up (first step)
        if self._base is None and self.reference is not None:
            self._base = model_spectra(self.reference, alpha=False)  # once: W0 does not change

    @param.depends("matrix", watch=True)
    def _send(self, label: str = "current") -> None:
        if self._current is None or self.matrix is None:
            return
        values = {}
        if self._base is not None and self.matrix in self._base.matrix.values:
            values["base (W0)"] = self._base.singular_values.sel(matrix=self.matrix).values
        values[label] = self._current.singular_values.sel(matrix=self.matrix).values
        self.pipe.send(_spectrum_frame(values))


class SpectraReport(pn.viewable.Viewer):
    """One model's spectra at a glance: table, effective rank per matrix, explorer, intruders vs a reference."""

    def __init__(self, model, reference=None, k: int = 10, eps: float = 0.5, top_k: int | None = None, **params):
        super().__init__(**params)
        self.spectra = model_spectra(model, top_k=top_k)  # top_k: fast top values only (big models)
        self.comparison = compare(reference, model, k=k, eps=eps) if reference is not None else None
        table = spectra_table(self.spectra)
        if self.comparison is not None:
            table["intruders"] = self.comparison.intruders.to_series().reindex(table.index)
            table["subspace_overlap"] = self.comparison.subspace_overlap.to_series().reindex(table.index)
        self.table = table
        rank = "effective_rank" if top_k is None else "stable_rank"  # the effective rank needs every σ
        bars = hv.Bars(table.reset_index(), "matrix", rank).opts(
            xrotation=60, responsive=True, height=320, tools=["hover"], title=f"{rank.replace('_', ' ')} per matrix",
            fontsize={"xticks": 7})
        total = "" if self.comparison is None else f" · intruder dimensions (k={k}, ε={eps}): **{int(self.comparison.intruders.sum())}**"
        self.explorer = SpectrumExplorer(self.spectra, reference=model_spectra(reference, alpha=False, top_k=top_k)
                                         if reference is not None else None)
        mode = "" if top_k is None else f" (top {top_k} singular values)"
        self._layout = pn.Column(
            Markdown(f"### Spectra of {type(model).__name__}{mode}: {self.spectra.sizes['matrix']} matrices{total}"),
            pn.pane.HoloViews(bars, sizing_mode="stretch_width", height=340), self.explorer,
            pn.widgets.Tabulator(table.round(4), height=300, sizing_mode="stretch_width", disabled=True),
            sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout


def analyse(model, reference=None, k: int = 10, eps: float = 0.5, top_k: int | None = None) -> SpectraReport:
    """The one-call panel for a loaded model (and, with ``reference``, its intruders relative to it).

    ``top_k`` computes only the top singular values of each matrix (``model_spectra(top_k=...)``: ~12× faster
    than a full analysis on GPT-2-small); the bars then show the stable rank, as the effective rank needs every σ.
    """
    return SpectraReport(model, reference=reference, k=k, eps=eps, top_k=top_k)
