"""The ESD view: one matrix's eigenvalue histogram (log–log) with its fitted power-law tail and the MP bulk edge.

>>> import widgets.esd as we
>>> we.esd_plot(model_spectra(model), "transformer.h.0.mlp.c_fc.weight")     # a static HoloViews overlay  # doctest: +SKIP
>>> we.ESDView(run)                  # pick a matrix and a step; follows a SpectraProbe(singular_values=True) live   # doctest: +SKIP

What is drawn (all numbers from :mod:`workbench.spectra.heavytail`):

* the ESD λ = σ² of WᵀW as a density histogram (a step outline) on ``bins`` logarithmic bins;
* the fitted power law p(λ) = f·(α − 1)/λ_min·(λ/λ_min)^(−α) for λ ≥ λ_min, f = the tail's share of the
  eigenvalues, so the line sits on the histogram where the fit holds; a dashed line at λ_min;
* the Marchenko–Pastur bulk edge λ+ (``mp_bulk_max``); eigenvalues right of it are spikes;
* a warning badge where α leaves the range the method is meaningful in (WeightWatcher's guidance:
  α < 2 over-trained, α > 6 no power-law tail; fewer than 10 tail eigenvalues: α is noise) — see
  :func:`workbench.spectra.alpha_warning`;
* for a top-k spectrum (``top_k`` mode) only the top eigenvalues exist: the histogram shows those, and says so.

Sources: a :func:`~workbench.spectra.model_spectra` Dataset (``matrix × index``), a run record or any Dataset
with ``step × matrix × index`` ``singular_values`` (a ``SpectraProbe(singular_values=True)``), a
:class:`~workbench.Run` (its history, live), or a model (computed once with ``model_spectra``).
"""

from __future__ import annotations

import math

import holoviews as hv
import numpy as np
import panel as pn
import param
import xarray as xr

from workbench.spectra import alpha_warning, heavytail_metrics, model_spectra

from .monitor import error_text
from .resources import Alert

hv.renderer("bokeh")

_METRICS = ("alpha", "alpha_xmin", "alpha_ks", "num_pl_spikes", "mp_bulk_max", "num_spikes")


def esd_data(source: xr.Dataset, matrix: str, step: int | None = None, prefix: str = "") -> dict:
    """What the ESD view draws for ``matrix`` (at ``step``, default the last with a spectrum) of ``source``.

    Returns ``eigenvalues`` (λ = σ², positive, descending), ``top_k`` (True when only the top values exist),
    ``step``, the metrics ``alpha``, ``alpha_xmin``, ``alpha_ks``, ``num_pl_spikes``, ``mp_bulk_max``,
    ``num_spikes`` (recorded ones where present, else computed from the eigenvalues and the matrix shape), and
    ``warning`` (:func:`~workbench.spectra.alpha_warning`; '' when α is in the meaningful range).
    """
    name = prefix + "singular_values"
    if name not in source:
        raise ValueError(f"no {name!r} in this record; attach SpectraProbe(singular_values=True"
                         f"{', prefix=' + repr(prefix) if prefix else ''}) to the run, or pass model_spectra(model).")
    sv = source[name]
    if matrix not in sv.matrix.values:
        raise ValueError(f"no matrix {matrix!r}; choose one of {list(sv.matrix.values)[:5]}…")
    sv = sv.sel(matrix=matrix)
    pick = {}
    if "step" in sv.dims:
        steps = sv.step.values[np.isfinite(sv.values).any(axis=-1)]
        if steps.size == 0:
            raise ValueError(f"{matrix!r} has no recorded spectrum yet.")
        step = int(steps[-1]) if step is None else int(steps[np.argmin(np.abs(steps - int(step)))])
        pick = {"step": step}
        sv = sv.sel(pick)
    s = np.asarray(sv.values, dtype=float)
    s = s[np.isfinite(s)]
    rows = int(source["rows"].sel(matrix=matrix)) if "rows" in source.coords else None
    cols = int(source["cols"].sel(matrix=matrix)) if "cols" in source.coords else None
    top_k = bool(rows and cols and s.size < min(rows, cols))
    out = {"eigenvalues": np.sort(s[s > 0] ** 2)[::-1], "top_k": top_k, "step": pick.get("step")}
    recorded = all(prefix + k in source for k in _METRICS)
    if recorded:
        for k in _METRICS:
            out[k] = float(source[prefix + k].sel(matrix=matrix, **pick))
    elif rows and cols:
        total = float(source[prefix + "frobenius_norm"].sel(matrix=matrix, **pick)) ** 2 \
            if top_k and prefix + "frobenius_norm" in source else None
        m = heavytail_metrics(s, rows, cols, total=total, top_k=top_k and total is not None)
        out.update({k: m[k] for k in _METRICS})
    else:
        raise ValueError(f"the record has singular values but neither the heavy-tailed metrics nor the matrix "
                         f"shape of {matrix!r}; record them with SpectraProbe(heavytail=True).")
    out["warning"] = alpha_warning(out["alpha"], int(out["num_pl_spikes"]) if np.isfinite(out["num_pl_spikes"]) else 0)
    return out


def esd_plot(source, matrix: str, step: int | None = None, prefix: str = "", bins: int = 60) -> hv.Overlay:
    """The log–log ESD histogram of ``matrix`` with its power-law fit and MP edge (see the module docstring)."""
    d = source if isinstance(source, dict) else esd_data(source, matrix, step, prefix)
    lam = d["eigenvalues"]
    title = f"{matrix}" + (f" · step {d['step']}" if d.get("step") is not None else "")
    if lam.size < 2 or lam[0] <= lam[-1]:
        return _empty().opts(title=title + " · (too few eigenvalues)")
    edges = np.logspace(math.log10(lam[-1]) - 1e-9, math.log10(lam[0]) + 1e-9, bins + 1)
    counts, _ = np.histogram(lam, edges)
    density = counts / (lam.size * np.diff(edges))  # a density in λ over the eigenvalues shown
    density[counts == 0] = np.nan  # log axis: empty bins are gaps
    # a step outline over the log bins (bars on a log axis would need a bottom at 0)
    layers = [hv.Curve((edges, np.append(density, density[-1])), "λ", "density",
                       label="ESD" + (" (top-k)" if d["top_k"] else "")).opts(interpolation="steps-post", line_width=2)]
    alpha, xmin, n_tail = d["alpha"], d["alpha_xmin"], d["num_pl_spikes"]
    if np.isfinite(alpha) and np.isfinite(xmin) and alpha > 1:
        x = np.logspace(math.log10(xmin), math.log10(lam[0]), 50)
        share = n_tail / lam.size
        layers.append(hv.Curve((x, share * (alpha - 1) / xmin * (x / xmin) ** (-alpha)), "λ", "density",
                               label=f"power law α = {alpha:.2f}").opts(color="crimson", line_width=2))
        layers.append(hv.VLine(xmin, label="λ_min").opts(color="crimson", line_dash="dashed"))
    if np.isfinite(d["mp_bulk_max"]) and d["mp_bulk_max"] > 0:
        layers.append(hv.VLine(d["mp_bulk_max"], label="MP edge λ+").opts(color="darkorange", line_width=2))
    fit = (f" · α {alpha:.2f}, KS {d['alpha_ks']:.3f}, {int(n_tail)} in tail, {int(d['num_spikes'])} spikes"
           if np.isfinite(alpha) else " · no power-law fit")
    return hv.Overlay(layers).opts(
        hv.opts.Curve(logx=True, logy=True, tools=["hover"]),
        hv.opts.Overlay(title=title + fit, legend_position="bottom_left", responsive=True, height=340,
                        xlabel="eigenvalue λ = σ²   (dashed: λ_min of the fit · orange: MP edge λ+)", ylabel="density",
                        show_grid=True))


def _empty() -> hv.Overlay:
    return hv.Overlay([hv.Curve([], "λ", "density")])


class ESDView(pn.viewable.Viewer):
    """Pick a matrix and a step: its ESD with the fit, the MP edge and a warning badge; follows a run live.

    ``source``: a Run (reads ``run.history`` with its own cursor every ``period`` ms — never touches the
    training thread), a Dataset (``model_spectra`` result or record), or a model (``model_spectra`` once).
    """

    matrix = param.Selector(default=None, objects=[], doc="The weight matrix shown.")
    step = param.Selector(default=None, objects=[], allow_None=True, doc="The recorded step shown (None: latest).")
    period = param.Integer(default=1000, bounds=(100, None), doc="Poll a run's history every this many ms.")
    prefix = param.String(default="", doc="Prefix of the SpectraProbe whose records are shown.")

    def __init__(self, source, poll: bool = True, **params):
        super().__init__(**params)
        from workbench.run import Run

        self.run = source if isinstance(source, Run) else None
        if self.run is None and not isinstance(source, xr.Dataset):
            source = model_spectra(source)
        self._ds = source if self.run is None else None
        self._arrays: dict[str, list] = {}  # name → [(step, DataArray over matrix[, index])] read from the history
        self._cursors: dict[str, int] = {}
        self._shapes: dict[str, tuple] | None = None
        self.badge = Alert("", alert_type="warning", visible=False)
        self.alert = Alert("", alert_type="danger", visible=False)
        # linked_axes=False: a replaced figure must not re-link other live plots' ranges (see docs/ui.md)
        self.pane = pn.pane.HoloViews(_empty(), sizing_mode="stretch_width", height=360, linked_axes=False)
        widgets = pn.Row(pn.widgets.Select.from_param(self.param.matrix, sizing_mode="stretch_width"),
                         pn.widgets.Select.from_param(self.param.step, width=140))
        self._layout = pn.Column(widgets, self.badge, self.alert, self.pane, sizing_mode="stretch_width")
        self._callback = None
        self.poll()
        if self.run is not None and poll:  # embedded in a probe panel, that panel's poller drives it instead
            self._callback = pn.state.add_periodic_callback(self.poll, period=self.period)

    def __panel__(self):
        return self._layout

    def dataset(self) -> xr.Dataset | None:
        """The spectra shown: the given Dataset, or what has been read from the run's history (step × matrix)."""
        if self._ds is not None:
            return self._ds
        sv = self._arrays.get(self.prefix + "singular_values")
        if not sv:
            return None
        steps = [s for s, _ in sv]
        data = {self.prefix + "singular_values": xr.concat([a for _, a in sv], dim=xr.DataArray(steps, dims="step"))}
        for k in _METRICS:
            items = dict(self._arrays.get(self.prefix + k, []))
            if all(s in items for s in steps):
                data[self.prefix + k] = xr.concat([items[s] for s in steps], dim=xr.DataArray(steps, dims="step"))
        ds = xr.Dataset(data)
        if self._shapes is None:  # the matrix shapes (read once): tell a top-k spectrum, compute missing metrics
            from workbench.matrices import weight_matrices

            self._shapes = {n: tuple(w.shape) for n, w in weight_matrices(self.run.model).items()}
        names = list(ds.matrix.values)
        if all(n in self._shapes for n in names):
            ds = ds.assign_coords(rows=("matrix", [self._shapes[n][0] for n in names]),
                                  cols=("matrix", [self._shapes[n][1] for n in names]))
        return ds

    def poll(self) -> None:
        """Read new history entries (for a run) and redraw if anything changed."""
        try:
            changed = self.run is None and not self.param.matrix.objects
            if self.run is not None:
                for name in (self.prefix + "singular_values",) + tuple(self.prefix + k for k in _METRICS):
                    items, self._cursors[name] = self.run.history.arrays_since(name, self._cursors.get(name, 0))
                    if items:
                        self._arrays.setdefault(name, []).extend(items)
                        changed = True
            if changed:
                self._update_choices()
                self._draw()
        except Exception as exc:  # shown, never a traceback in the UI
            self.alert.object, self.alert.visible = error_text(exc), True

    def _update_choices(self) -> None:
        ds = self.dataset()
        if ds is None:
            self.alert.object = ("Waiting for spectra: attach SpectraProbe(singular_values=True) to the run "
                                 "(the ESD needs the eigenvalues, not only α).")
            self.alert.visible = True
            return
        names = list(ds.matrix.values)
        with param.parameterized.discard_events(self):
            self.param.matrix.objects = names
            if self.matrix not in names:
                self.matrix = names[0]
            steps = [None] + ([int(s) for s in ds.step.values] if "step" in ds.dims else [])
            self.param.step.objects = steps
            if self.step not in steps:
                self.step = None

    @param.depends("matrix", "step", watch=True)
    def _draw(self) -> None:
        ds = self.dataset()
        if ds is None or self.matrix is None:
            return
        try:
            d = esd_data(ds, self.matrix, self.step, self.prefix)
            self.pane.object = esd_plot(d, self.matrix)
            note = d["warning"] + (" · top-k spectrum: only the top eigenvalues are shown and fitted" if d["top_k"]
                                   else "")
            self.badge.object, self.badge.visible = note.strip(" ·"), bool(note)
            self.alert.visible = False
        except Exception as exc:
            self.alert.object, self.alert.visible = error_text(exc), True

    def stop_polling(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None


def esd_view(source, matrix: str | None = None, step: int | None = None, prefix: str = "") -> ESDView:
    """An :class:`ESDView` of ``source`` opened on ``matrix`` (default: the first) and ``step`` (default: latest)."""
    view = ESDView(source, prefix=prefix)
    if matrix is not None:
        view.matrix = matrix
    if step is not None and step in view.param.step.objects:
        view.step = step
    return view


def _spectra_probe_view(probe, **kwargs):
    """A SpectraProbe's by-shape panel, plus its ESD histogram with the fit when it logs the spectrum."""
    from .probe_view import probe_view

    run = kwargs.get("run") or probe.run
    if probe.singular_values and run is not None:
        kwargs["parts"] = [*kwargs.get("parts", []), _ESDPart(ESDView(run, poll=False, prefix=probe.prefix))]
    return probe_view(probe, **kwargs)


class _ESDPart(pn.viewable.Viewer):
    """The ESD view as a part of a probe panel: the panel's poller (one cursor per view) tells it when to read."""

    def __init__(self, esd: ESDView, **params):
        super().__init__(**params)
        self.esd = esd

    def add_rows(self, rows) -> None:  # the ESD reads arrays, not rows; it catches up at flush
        pass

    def flush(self) -> None:
        self.esd.poll()

    def clear(self) -> None:
        pass

    def __panel__(self):
        return self.esd


def _register() -> None:
    from workbench.spectra import SpectraProbe

    from .registry import register_view

    register_view(SpectraProbe)(_spectra_probe_view)


_register()
