"""Fine-tuning lab views: the FineTune monitor with live intruders, the compare-runs panel, the init panel.

>>> import widgets
>>> widgets.view(ft)                          # FineTuneMonitor: training monitor + intruder heatmap + mitigation  # doctest: +SKIP
>>> CompareRuns([full, lora_r1, lora_r64])   # side by side: task loss, forgetting, intruders, ΔW rank           # doctest: +SKIP
>>> InitPanel(model)                          # init recipes (workbench.init) + LoRA inits, with a spectrum preview # doctest: +SKIP

Views never compute science: intruder counts and ΔW ranks come from the run's history (written by the
SpectraProbe / DeltaProbe during training), mitigation from :func:`workbench.finetune.mitigation.mitigation_sweep`,
previews from :func:`workbench.init.preview`. Each view polls ``history.rows_since`` / ``arrays_since`` with
its own cursors from a periodic callback (exceptions shown, never raised) and pushes into bounded
``Buffer``s (curves over steps); snapshot plots (the matrix × step heatmaps, whose categorical axes grow)
are rebuilt from the accumulated frame when new measurements arrive, the preview spectrum goes through a ``Pipe``.
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import torch
from holoviews.streams import Buffer, Pipe

from workbench.finetune import FineTune, LORA_INITS
from workbench.finetune.compare import compare_runs, run_label, summary_table

from .polling import Poller
from .monitor import TrainingMonitor, error_text
from .registry import register_view
from .resources import Markdown

hv.renderer("bokeh")

CURVES = ("val_loss", "pretrain_loss", "intruders_total")
TITLES = {"val_loss": "task loss (held out)", "pretrain_loss": "forgetting: pre-training loss",
          "intruders_total": "intruder dimensions (sum over matrices)", "loss": "train loss"}


def _short(matrix: str) -> str:
    """``transformer.h.3.attn.c_attn.weight`` → ``h.3.attn.c_attn`` (heatmap axis labels)."""
    return matrix.replace("transformer.", "").replace("model.layers.", "L").removesuffix(".weight")


class MatrixHeatmap:
    """A matrix × step heatmap of one per-matrix array of a run's history (e.g. ``intruders``).

    A snapshot plot: each poll that finds new measurements rebuilds the element from the accumulated
    frame (bounded to the last ``max_steps`` measurements) and swaps it into ``pane``. Not a
    ``DynamicMap`` over a ``Pipe``: with ``framewise=True`` and an empty first frame, HoloViews 1.23 raises
    ``TypeError: unsupported operand type(s) for -=: 'str' and 'float'`` when the categorical ``matrix``
    axis arrives (reproduced; it is why ``widgets.spectrum.SpectraMonitor`` is not reused here).
    ``data`` holds what is shown.
    """

    def __init__(self, run, name: str, title: str, cmap: str = "reds", height: int = 320, max_steps: int = 200):
        self.run, self.name, self.title, self.cmap, self.height, self.max_steps = run, name, title, cmap, height, max_steps
        self.cursor = 0
        self.frames: list[pd.DataFrame] = []
        self.data = pd.DataFrame({"step": np.array([], "int64"), "matrix": np.array([], object),
                                  name: np.array([], "float64")})
        self.pane = pn.pane.HoloViews(self._element(self.data), sizing_mode="stretch_width", height=height)

    def _element(self, data: pd.DataFrame):
        return hv.HeatMap(data, ["step", "matrix"], self.name).opts(
            cmap=self.cmap, colorbar=True, tools=["hover"], responsive=True, height=self.height, title=self.title)

    def poll(self) -> int:
        items, self.cursor = self.run.history.arrays_since(self.name, self.cursor)
        for step, da in items:
            self.frames.append(pd.DataFrame({"step": step, "matrix": [_short(m) for m in da.matrix.values],
                                             self.name: np.asarray(da.values, dtype=float)}))
        if items:
            self.frames = self.frames[-self.max_steps:]
            self.data = pd.concat(self.frames, ignore_index=True)
            self.pane.object = self._element(self.data)
        return len(items)


@register_view(FineTune)
class FineTuneMonitor(pn.viewable.Viewer):
    """The generic training monitor, plus live intruder and ΔW-rank heatmaps and a mitigation control."""

    def __init__(self, run: FineTune, period: int = 400, **monitor_kw):
        super().__init__()
        self.run = run
        # Adapter settings are fixed when the FineTune is built: shown as text, not as controls that do nothing.
        fixed = set(FineTune.ADAPTER_PARAMS) | {"forget_eval", "intruders_every", "intruder_k", "intruder_eps"}
        monitor_kw.setdefault("parameters", [p for p in run.config() if p not in fixed])
        self.monitor = TrainingMonitor(run, period=period, **monitor_kw)
        self.settings = Markdown(
            f"**{run_label(run)}** · {len(run.target_matrices)} target matrices · s = {run.scaling():g} · "
            f"adapter built in {run.init_seconds:.2f}s (settings fixed; build a new FineTune to change them)",
            sizing_mode="stretch_width")
        self.intruders = MatrixHeatmap(run, "intruders", "intruder dimensions per matrix (vs W0)")
        self.delta_rank = MatrixHeatmap(run, "delta_effective_rank", "effective rank of ΔW = W − W0", cmap="viridis")
        self.lam = pn.widgets.FloatSlider(label="λ (scale of intruder components)", start=0.0, end=1.0, step=0.05,
                                          value=0.75)
        self.mitigate_button = pn.widgets.Button(label="Mitigate & measure", color="warning")
        self.mitigate_button.on_click(self._on_mitigate)
        self.result = pn.pane.DataFrame(pd.DataFrame(), sizing_mode="stretch_width")
        self.message = Markdown("", sizing_mode="stretch_width")
        self._callback = None
        self.period = period
        # The spectra lab's explorer (base W0 vs current singular values of a chosen matrix; Refresh recomputes).
        from .spectrum import SpectrumExplorer

        self.explorer = SpectrumExplorer(run)
        spectra = pn.Column(
            self.intruders.pane,
            self.delta_rank.pane,
            pn.Card(self.explorer, title="Spectrum explorer (W0 vs now)", collapsed=True, sizing_mode="stretch_width"),
            pn.Card(pn.Row(self.lam, self.mitigate_button), self.message, self.result,
                    title="Intruder mitigation (on a merged copy; the run is not modified)", collapsed=True),
            sizing_mode="stretch_width")
        self._layout = pn.Column(self.settings, self.monitor, spectra, sizing_mode="stretch_width")
        self.start_polling()

    start_polling = Poller.start_polling

    def stop_polling(self) -> None:
        """Stop this view's poll, the monitor's and the explorer's."""
        Poller.stop_polling(self)
        self.monitor.stop_polling()
        self.explorer.stop_polling()

    def poll(self) -> int:
        try:
            with pn.io.hold():
                return self.intruders.poll() + self.delta_rank.poll()
        except Exception as exc:  # noqa: BLE001 - keep the periodic callback alive
            self.message.object = f"⚠ {error_text(exc)}"
            return 0

    def _on_mitigate(self, _event=None) -> None:
        from workbench.finetune.mitigation import mitigation_sweep

        try:
            if self.monitor.is_training:
                raise RuntimeError("Stop the run before mitigating (it measures a merged copy of the current model).")
            ds = mitigation_sweep(self.run, lams=[1.0, float(self.lam.value)])
            cols = [c for c in ("intruders", "val_loss", "pretrain_loss") if c in ds]
            self.result.object = ds[cols].to_dataframe().reset_index()
            self.message.object = f"Measured λ = 1 (as trained) and λ = {self.lam.value:g} at step {self.run.global_step}."
        except Exception as exc:  # noqa: BLE001
            self.message.object = f"⚠ {error_text(exc)}"

    def __panel__(self):
        return self._layout


class CompareRuns(pn.viewable.Viewer):
    """Several fine-tuning runs side by side: task loss, forgetting and intruders over steps; a final table.

    Curves update live while the runs train (each run keeps its own history cursor); the table and the
    per-matrix intruder heatmap (run × matrix at the last measurement) refresh on every poll that saw new data.
    """

    def __init__(self, runs, period: int = 500, buffer_length: int = 2000):
        super().__init__()
        self.runs = list(runs)
        self.labels = [run_label(r) for r in self.runs]
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"Runs need distinct labels to be compared, got {self.labels}; set label= on them.")
        self.period = period
        self._callback = None
        self.cursors = [0] * len(self.runs)
        empty = {n: pd.DataFrame({"step": np.array([], "int64"), n: np.array([], "float64")}) for n in CURVES}
        self.buffers = {(lab, n): Buffer(empty[n], length=buffer_length, index=False)
                        for lab in self.labels for n in CURVES}
        #: run × matrix intruder counts at the last measurement (a snapshot plot, rebuilt when it changes).
        self.matrix_data = pd.DataFrame({"run": [], "matrix": [], "intruders": []})
        self.heat_pane = pn.pane.HoloViews(self._heat(self.matrix_data), sizing_mode="stretch_width", height=280)
        self.table = pn.pane.DataFrame(pd.DataFrame(), sizing_mode="stretch_width")
        self.message = Markdown("")
        plots = [pn.pane.HoloViews(self._overlay(n), sizing_mode="stretch_width") for n in CURVES]
        self._layout = pn.Column(pn.Row(*plots[:2], sizing_mode="stretch_width"),
                                 pn.Row(plots[2], self.heat_pane,
                                        sizing_mode="stretch_width"),
                                 self.message, self.table, sizing_mode="stretch_width")
        self.start_polling()

    start_polling = Poller.start_polling
    stop_polling = Poller.stop_polling

    @staticmethod
    def _heat(data: pd.DataFrame):
        return hv.HeatMap(data, ["matrix", "run"], "intruders").opts(
            cmap="reds", colorbar=True, tools=["hover"], responsive=True, height=260, xrotation=60,
            title="intruders per matrix at the last measurement")

    def _overlay(self, name: str):
        curves = [hv.DynamicMap(lambda data, _n=name, _l=lab: hv.Curve(data, "step", _n, label=_l),
                                streams=[self.buffers[(lab, name)]]) for lab in self.labels]
        return hv.Overlay(curves).opts(hv.opts.Curve(responsive=True, height=260, framewise=True, tools=["hover"],
                                                     show_grid=True),
                                       hv.opts.Overlay(title=TITLES[name], legend_position="top_right"))

    def poll(self) -> int:
        """Push new rows of every run into its curves; refresh the table and heatmap if anything arrived."""
        try:
            total = 0
            with pn.io.hold():
                for i, (run, lab) in enumerate(zip(self.runs, self.labels)):
                    rows, self.cursors[i] = run.history.rows_since(self.cursors[i])
                    total += len(rows)
                    for name in CURVES:
                        pts = [(r["step"], float(r[name])) for r in rows
                               if isinstance(r.get(name), (int, float)) and np.isfinite(r[name])]
                        if pts:
                            steps, vals = zip(*pts)
                            self.buffers[(lab, name)].send(pd.DataFrame({"step": np.asarray(steps, "int64"),
                                                                         name: np.asarray(vals, "float64")}))
                if total:
                    self.refresh_summary()
            return total
        except Exception as exc:  # noqa: BLE001 - keep the periodic callback alive
            self.message.object = f"⚠ {error_text(exc)}"
            return 0

    def refresh_summary(self) -> None:
        """Table of final numbers and run × matrix intruders, from :func:`compare_runs` (the core)."""
        ds = compare_runs(self.runs)
        self.table.object = summary_table(ds).round(4).reset_index()
        if "intruders" in ds:
            frame = ds.intruders.to_dataframe().reset_index().dropna(subset=["intruders"])
            frame["matrix"] = frame["matrix"].map(_short)
            self.matrix_data = frame[["run", "matrix", "intruders"]]
            self.heat_pane.object = self._heat(self.matrix_data)

    def __panel__(self):
        return self._layout


class InitPanel(pn.viewable.Viewer):
    """The init recipes of :mod:`workbench.init` (editable parameters) and PEFT's LoRA inits, with a preview.

    Pick a recipe; its parameters appear as controls; *Preview* shows the spectrum and effective rank of
    each selected matrix of ``model`` before/after the recipe (:func:`workbench.init.preview`; nothing is
    modified). The LoRA-init table lists :data:`workbench.finetune.LORA_INITS` (needs data, no-op, rewrites W0).
    """

    def __init__(self, model, data=None, loss=None):
        super().__init__()
        from workbench.init import RECIPES

        self.model, self.data, self.loss = model, data, loss
        self.recipes = RECIPES
        self.recipe_table = pn.widgets.Tabulator(pd.DataFrame(RECIPES.table()), disabled=True, show_index=False,
                                                 sizing_mode="stretch_width", height=200)
        self.lora_table = pn.widgets.Tabulator(pd.DataFrame(LORA_INITS.table()).astype(str), disabled=True,
                                               show_index=False, sizing_mode="stretch_width", height=300)
        self.choice = pn.widgets.Select(label="recipe", options=RECIPES.names())
        self.recipe = None
        self.controls = pn.Column()
        self.preview_button = pn.widgets.Button(label="Preview", color="primary")
        self.preview_button.on_click(self._on_preview)
        self.choice.param.watch(lambda e: self._select(e.new), "value")
        self.pipe = Pipe(data=pd.DataFrame({"index": [], "sigma": [], "when": []}))
        self.ranks = pn.pane.DataFrame(pd.DataFrame(), sizing_mode="stretch_width")
        self.message = Markdown("")
        plot = hv.DynamicMap(self._spectrum, streams=[self.pipe])
        self._select(self.choice.value)
        from workbench.init.vocab import EMBEDDING_INITS

        self.vocab_init = pn.widgets.Select(label="new-token init", options=list(EMBEDDING_INITS), value="mean")
        self.vocab_n = pn.widgets.IntInput(label="new tokens", value=8, start=1, end=10_000, width=100)
        self.vocab_button = pn.widgets.Button(label="Preview new embeddings", color="default")
        self.vocab_button.on_click(lambda _e: self.preview_vocab())
        self.vocab_table = pn.pane.DataFrame(pd.DataFrame(), sizing_mode="stretch_width")
        self._layout = pn.Row(
            pn.Column("### Init recipes", self.recipe_table, self.choice, self.controls, self.preview_button,
                      self.message, "### Vocabulary expansion", pn.Row(self.vocab_init, self.vocab_n),
                      self.vocab_button, self.vocab_table,
                      "### LoRA inits (PEFT 0.21 + LoRA-SB as method)", self.lora_table, width=520),
            pn.Column(pn.pane.HoloViews(plot, sizing_mode="stretch_width"), self.ranks, sizing_mode="stretch_width"),
            sizing_mode="stretch_width")

    @staticmethod
    def _spectrum(data):
        if len(data) == 0:
            return hv.NdOverlay({"before": hv.Curve([], "index", "sigma")}, kdims="when")
        return hv.NdOverlay({w: hv.Curve(g, "index", "sigma") for w, g in data.groupby("when")}, kdims="when").opts(
            hv.opts.Curve(logy=True, tools=["hover"], responsive=True, height=300),
            hv.opts.NdOverlay(title="singular values of the first selected matrix"))

    def _select(self, name: str) -> None:
        self.recipe = self.recipes.get(name)()
        self.controls.objects = [pn.Param(self.recipe.param, show_name=False)]

    def _on_preview(self, _event=None) -> None:
        self.preview()

    def preview(self):
        """Run :func:`workbench.init.preview` for the current recipe; returns the Dataset (or None on error)."""
        from workbench.init import preview

        try:
            ds = preview(self.model, self.recipe, data=self.data, loss=self.loss)
        except Exception as exc:  # noqa: BLE001 - a message for the user
            self.message.object = f"⚠ {error_text(exc)}"
            return None
        first = str(ds.matrix.values[0])
        frames = [pd.DataFrame({"index": ds.index.values, "sigma": ds[f"sigma_{w}"].sel(matrix=first).values,
                                "when": w}).dropna() for w in ("before", "after")]
        self.pipe.send(pd.concat(frames, ignore_index=True))
        self.ranks.object = ds[["erank_before", "erank_after", "rank_before", "rank_after"]].to_dataframe().round(3)
        self.message.object = f"Preview of **{self.choice.value}** on {ds.sizes['matrix']} matrices (nothing modified)."
        return ds

    def preview_vocab(self):
        """Rows that :func:`workbench.init.vocab.new_rows` would add (nothing modified): norms vs existing rows."""
        from workbench.init.vocab import new_rows

        try:
            emb = self.model.get_input_embeddings().weight.detach().float().cpu()  # [V, d]
            rows = new_rows(emb, int(self.vocab_n.value), self.vocab_init.value, torch.Generator().manual_seed(0))
            mu = emb.mean(0)
            stats = {"existing rows": emb, f"new rows ({self.vocab_init.value})": rows}
            self.vocab_table.object = pd.DataFrame(
                {k: {"rows": len(v), "mean ‖e‖": float(v.norm(dim=1).mean()),
                     "mean ‖e − μ‖": float((v - mu).norm(dim=1).mean())} for k, v in stats.items()}).T.round(4)
            return self.vocab_table.object
        except Exception as exc:  # noqa: BLE001 - a message for the user
            self.message.object = f"⚠ {error_text(exc)}"
            return None

    def __panel__(self):
        return self._layout
