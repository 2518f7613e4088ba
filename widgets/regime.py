"""Views of the rich/lazy lab: the init editor (dials, live preview, Train) and the regime map.

* :class:`InitEditor` — registered for :class:`workbench.regime.InitLab`. Sliders for scale, rank and
  alignment; the preview (singular values and effective rank of W_rec, from ``lab.preview()``) refreshes
  when a dial moves; **Train** runs ``lab.start()`` (a background thread) and the view (a
  :class:`~widgets.streaming.Poller`) streams ``lab.history`` into a bounded ``Buffer`` that feeds the
  regime map (weight change × kernel alignment).
* :class:`RegimeMap` — a sweep Dataset as a heat map of a metric (kernel alignment, weight change …) over
  two grid dims, averaged over the rest by ``workbench.regime.grid_summary``.

>>> import widgets                                               # doctest: +SKIP
>>> widgets.view(InitLab(n_hidden=32))                           # doctest: +SKIP
>>> RegimeMap(sweep_result, x="rank", y="scale")                 # doctest: +SKIP
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from holoviews.streams import Buffer, Pipe

from workbench.regime import InitLab, grid_summary

from .registry import register_view
from .resources import Markdown, load_notebook_extension
from .streaming import Feed, Poller, error_text

hv.renderer("bokeh")  # the Bokeh backend without notebook output (see widgets.resources.publish_bokehjs)

MAP_COLUMNS = ["delta_rel_norm", "kernel_alignment", "rep_cka", "rank", "scale", "alignment", "aligned", "accuracy"]


def _empty_points() -> pd.DataFrame:
    return pd.DataFrame({c: np.array([], dtype=float) for c in MAP_COLUMNS})


@register_view(InitLab)
class InitEditor(Poller, pn.viewable.Viewer):
    """Dials + preview + Train + regime map of trained points for one :class:`InitLab`."""

    def __init__(self, lab: InitLab, period_ms: int = 400, **params):
        super().__init__(**params)
        self.lab = self.source = lab
        self.feed = Feed(lab.history)
        self._rows: list[dict] = []
        self.preview_pipe = Pipe(data=pd.DataFrame({"index": [], "sigma": []}))
        self.points = Buffer(_empty_points(), length=2000, index=False)
        self.erank = pn.indicators.Number(label="effective rank of W_rec", value=0.0, format="{value:.2f}", font_size="24pt")
        self.status = Markdown("")
        self.train_button = pn.widgets.Button(label="Train", color="primary")
        self.train_button.on_click(self._train)
        self.controls = pn.Param(lab.param, parameters=["task", "n_hidden", "scale", "rank", "aligned", "alignment", "seed",
                                                        "steps", "lr"], show_name=False,
                                 widgets={"scale": pn.widgets.FloatSlider, "alignment": pn.widgets.FloatSlider,
                                          "rank": pn.widgets.IntSlider})
        lab.param.watch(self._on_dials, ["task", "n_hidden", "scale", "rank", "aligned", "alignment", "seed"])
        lab.param.watch(self._on_state, ["running", "message"])
        self.refresh_preview()
        self._callback = None
        self.period = period_ms
        self._layout = pn.Row(pn.Column(self.controls, self.train_button, self.status),
                              pn.Column(self.erank, self.spectrum_plot()), self.map_plot())
        self.start_polling()

    # -- effects (the lab computes; the view only forwards) ------------------------------------
    def refresh_preview(self) -> None:
        try:
            ds = self.lab.preview()
        except Exception as exc:  # a bad dial combination: say so, keep the last preview
            self.status.object = f"⚠ {exc}"
            return
        sigma = ds.singular_values_after.sel(matrix="weight_rec").dropna("index")
        self.preview_pipe.send(pd.DataFrame({"index": sigma.index.values, "sigma": sigma.values}))
        self.erank.value = float(ds.effective_rank_after.sel(matrix="weight_rec"))
        self.status.object = ""

    def _on_dials(self, *_):
        self.refresh_preview()

    def _on_state(self, *_):
        self.train_button.disabled = bool(self.lab.running)
        if self.lab.message:
            self.status.object = self.lab.message

    def _train(self, *_):
        try:
            self.lab.start()
        except Exception as exc:
            self.status.object = f"⚠ {exc}"

    def read(self) -> int:
        """New trained points from the lab's history (sent to the map at the next flush)."""
        rows = self.feed.rows()
        self._rows += rows
        return len(rows)

    def flush(self) -> None:
        if self._rows:
            frame = pd.DataFrame(self._rows).reindex(columns=MAP_COLUMNS).astype(float)
            self._rows = []
            self.points.send(frame)

    def show_error(self, exc) -> None:
        self.status.object = f"⚠ poll failed: {error_text(exc)}"

    # -- layout --------------------------------------------------------------------------------
    def spectrum_plot(self):
        return hv.DynamicMap(lambda data: hv.Curve(data, "index", "sigma").opts(
            logy=True, title="W_rec singular values (preview)", width=380, height=260, tools=["hover"]),
            streams=[self.preview_pipe])

    def map_plot(self):
        return hv.DynamicMap(lambda data: hv.Points(data, ["delta_rel_norm", "kernel_alignment"],
                                                    ["rank", "scale", "alignment", "rep_cka", "accuracy"]).opts(
            color="rank", cmap="viridis", colorbar=True, size=9, logx=False, tools=["hover"], width=420, height=300,
            title="regime map: lazy = top-left, rich = bottom-right", xlabel="relative weight change ‖ΔW_rec‖/‖W0‖",
            ylabel="kernel alignment K0·Kt"), streams=[self.points])

    def __panel__(self):
        return self._layout

    def _repr_mimebundle_(self, include=None, exclude=None):
        load_notebook_extension()
        return super()._repr_mimebundle_(include, exclude)


class RegimeMap(pn.viewable.Viewer):
    """Heat map of a sweep metric over two grid dims (other dims averaged, failed points skipped)."""

    var = param.Selector(default=None, objects=[], doc="Metric to show.")
    x = param.Selector(default=None, objects=[], doc="Grid dim on the x axis.")
    y = param.Selector(default=None, objects=[], doc="Grid dim on the y axis.")

    def __init__(self, ds, var: str = "kernel_alignment", x: str | None = None, y: str | None = None, **params):
        super().__init__(**params)
        self.ds = ds
        dims = list(ds.dims)
        metrics = [v for v in ds.data_vars if v not in ("status", "error") and ds[v].dtype.kind == "f"]
        self.param.var.objects, self.param.x.objects, self.param.y.objects = metrics, dims, dims
        self.var = var if var in metrics else metrics[0]
        self.x = x or dims[0]
        self.y = y or (dims[1] if len(dims) > 1 else dims[0])
        self.pipe = Pipe(data=self._frame())
        self.param.watch(lambda *_: self.pipe.send(self._frame()), ["var", "x", "y"])

    def _frame(self) -> pd.DataFrame:
        da = grid_summary(self.ds, self.var, self.x, self.y if self.y != self.x else None)
        frame = da.to_dataframe(name="value").reset_index()
        if self.y == self.x:
            frame["_y"] = 0
        for c in (self.x, self.y):
            frame[c] = frame[c].astype(str)  # categorical axes: grids are rarely evenly spaced
        return frame

    def plot(self):
        return hv.DynamicMap(lambda data: hv.HeatMap(data, [self.x, self.y if self.y != self.x else "_y"], "value").opts(
            cmap="viridis", colorbar=True, tools=["hover"], width=420, height=320, title=f"{self.var} (mean over other dims)"),
            streams=[self.pipe])

    def __panel__(self):
        return pn.Row(pn.Param(self.param, parameters=["var", "x", "y"], show_name=False), self.plot())


class RecipeEditor(pn.viewable.Viewer):
    """Any registered init recipe, its declared parameters as widgets, and a preview on a model's matrices.

    The recipe list comes from ``workbench.init.RECIPES.table()``; the controls are ``pn.Param`` of the
    recipe instance (a ``param.Parameterized``); **Preview** calls ``workbench.init.preview`` (nothing is
    modified) and **Apply** calls ``workbench.init.apply`` on the model. ``data`` is passed to recipes
    that need the task (``aligned``).
    """

    recipe_name = param.Selector(default="low_rank", objects=[], doc="Init recipe.")

    def __init__(self, model, data=None, **params):
        from workbench.init import RECIPES

        self.param.recipe_name.objects = RECIPES.names()
        super().__init__(**params)
        self.model, self.data = model, data
        self.table = pn.widgets.Tabulator(pd.DataFrame(RECIPES.table()), disabled=True, show_index=False, height=180)
        self.pipe = Pipe(data=pd.DataFrame({"matrix": [], "index": [], "singular_values_before": [], "singular_values_after": []}))
        self.summary = pn.widgets.Tabulator(pd.DataFrame(), disabled=True, show_index=False, height=180)
        self.status = Markdown("")
        self.preview_button = pn.widgets.Button(label="Preview")
        self.apply_button = pn.widgets.Button(label="Apply", color="warning")
        self.preview_button.on_click(lambda *_: self.refresh())
        self.apply_button.on_click(lambda *_: self.apply())
        self.controls = pn.Column()
        self.param.watch(lambda *_: self._new_recipe(), ["recipe_name"])
        self._new_recipe()

    def _new_recipe(self):
        from workbench.init import resolve

        self.recipe = resolve(self.recipe_name)
        self.controls[:] = [pn.Param(self.recipe.param, show_name=False)]

    def refresh(self) -> None:
        from workbench.init import preview

        try:
            ds = preview(self.model, self.recipe, data=self.data)
        except Exception as exc:  # bad parameters: say why, keep the last preview
            self.status.object = f"⚠ {exc}"
            return
        frame = ds[["singular_values_before", "singular_values_after"]].to_dataframe().dropna().reset_index()
        self.pipe.send(frame)
        self.summary.value = ds[["effective_rank_before", "effective_rank_after", "numerical_rank_before", "numerical_rank_after", "frobenius_norm_before",
                                 "frobenius_norm_after"]].to_dataframe().reset_index()
        self.status.object = f"previewed {ds.sizes['matrix']} matrices"

    def apply(self) -> None:
        from workbench.init import apply

        try:
            names = apply(self.model, self.recipe, data=self.data)
            self.status.object = f"applied {self.recipe_name} to {len(names)} matrices"
        except Exception as exc:
            self.status.object = f"⚠ {exc} (model unchanged)"

    def plot(self):
        def element(data):
            first = data[data["matrix"] == data["matrix"].iloc[0]] if len(data) else data
            return (hv.Curve(first, "index", "singular_values_before", label="before") *
                    hv.Curve(first, "index", "singular_values_after", label="after")).opts(
                hv.opts.Curve(logy=True, width=420, height=260, tools=["hover"]))

        return hv.DynamicMap(element, streams=[self.pipe])

    def __panel__(self):
        return pn.Row(pn.Column(self.table, pn.Param(self.param, parameters=["recipe_name"], show_name=False),
                                self.controls, pn.Row(self.preview_button, self.apply_button), self.status),
                      pn.Column(self.plot(), self.summary))
