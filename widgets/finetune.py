"""Fine-tuning lab views: the FineTune monitor with live intruders, the compare-runs panel, the init panel.

>>> import widgets
>>> widgets.view(ft)                          # the training monitor: + intruder/ΔW heatmaps (its probes), mitigation  # doctest: +SKIP
>>> CompareRuns([full, lora_r1, lora_r64])   # side by side: task loss, forgetting, intruders, ΔW rank           # doctest: +SKIP
>>> InitPanel(model)                          # init recipes (workbench.init) + LoRA inits, with a spectrum preview # doctest: +SKIP

Views never compute science: intruder counts and ΔW ranks come from the run's history (written by the
SpectraProbe / DeltaProbe during training), mitigation from :func:`workbench.finetune.mitigation.mitigation_sweep`,
previews from :func:`workbench.init.preview`. Live views are built from :mod:`widgets.streaming` (one poller,
a feed of cursors per view, rows → bounded ``Buffer``s) and update their plots in place.
"""

from __future__ import annotations

import holoviews as hv
import pandas as pd
import panel as pn
import torch
from holoviews.streams import Pipe

from workbench.finetune import FineTune, LORA_INITS
from workbench.finetune.compare import compare_runs, run_label, summary_table

from .heatmap import short_name
from .monitor import TrainingMonitor
from .registry import register_view
from .resources import Markdown
from .series import TimeSeries
from .streaming import Feed, Poller, error_text

hv.renderer("bokeh")

CURVES = ("val_loss", "pretrain_loss", "intruders_total")
TITLES = {"val_loss": "task loss (held out)", "pretrain_loss": "forgetting: pre-training loss",
          "intruders_total": "intruder dimensions (sum over matrices)", "loss": "train loss"}


class MitigationPanel(pn.viewable.Viewer):
    """Scale the intruder components of a merged copy by λ and measure (the run is not modified)."""

    def __init__(self, run: FineTune):
        super().__init__()
        self.run = run
        self.lam = pn.widgets.FloatSlider(label="λ (scale of intruder components)", start=0.0, end=1.0, step=0.05,
                                          value=0.75)
        self.mitigate_button = pn.widgets.Button(label="Mitigate & measure", color="warning")
        self.mitigate_button.on_click(self._on_mitigate)
        self.result = pn.pane.DataFrame(pd.DataFrame(), sizing_mode="stretch_width")
        self.message = Markdown("", sizing_mode="stretch_width")
        self._layout = pn.Card(pn.Row(self.lam, self.mitigate_button), self.message, self.result,
                               title="Intruder mitigation (on a merged copy; the run is not modified)", collapsed=True,
                               sizing_mode="stretch_width")

    def _on_mitigate(self, _event=None) -> None:
        from workbench.finetune.mitigation import mitigation_sweep

        try:
            if self.run.running:
                raise RuntimeError("Stop the run before mitigating (it measures a merged copy of the current model).")
            ds = mitigation_sweep(self.run, lams=[1.0, float(self.lam.value)])
            cols = [c for c in ("intruders", "val_loss", "pretrain_loss") if c in ds]
            self.result.object = ds[cols].to_dataframe().reset_index()
            self.message.object = f"Measured λ = 1 (as trained) and λ = {self.lam.value:g} at step {self.run.global_step}."
        except Exception as exc:  # noqa: BLE001
            self.message.object = f"⚠ {error_text(exc)}"

    def __panel__(self):
        return self._layout


@register_view(FineTune)
def finetune_monitor(run: FineTune, **monitor_kw) -> TrainingMonitor:
    """The one training monitor, configured for fine-tuning.

    Adapter settings are fixed when the FineTune is built: shown as a header line, not as controls that do
    nothing. The intruder and ΔW heatmaps are the attached SpectraProbe's and DeltaProbe's own panels (by
    shape); this adds the spectrum explorer (W0 vs now, Refresh) and the mitigation tool.
    """
    from .spectrum import SpectrumExplorer

    fixed = set(FineTune.ADAPTER_PARAMS) | {"forget_eval", "intruders_every", "intruder_k", "intruder_eps"}
    monitor_kw.setdefault("parameters", [p for p in run.config() if p not in fixed])
    monitor_kw.setdefault("header", f"**{run_label(run)}** · {len(run.target_matrices)} target matrices · "
                                    f"s = {run.scaling():g} · adapter built in {run.init_seconds:.2f}s "
                                    f"(settings fixed; build a new FineTune to change them)")
    extras = [SpectrumExplorer(run), MitigationPanel(run)]  # the explorer: W0 vs now of a chosen matrix (Refresh)
    monitor_kw.setdefault("extras", extras)
    return TrainingMonitor(run, **monitor_kw)


class CompareRuns(Poller, pn.viewable.Viewer):
    """Several fine-tuning runs side by side: task loss, forgetting and intruders over steps; a final table.

    Curves update live while the runs train (each run has its own :class:`~widgets.streaming.Feed`); one
    :class:`~widgets.series.TimeSeries` per quantity, one curve per run. The table and the run × matrix
    intruder heatmap (at the last measurement, updated in place through a ``Pipe``) refresh when new rows
    arrived.
    """

    def __init__(self, runs, period: int = 500, buffer_length: int = 2000):
        super().__init__()
        self.runs = list(runs)
        self.labels = [run_label(r) for r in self.runs]
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"Runs need distinct labels to be compared, got {self.labels}; set label= on them.")
        self.period = period
        self.feeds = [Feed(r.history) for r in self.runs]
        self.series = {n: TimeSeries(self.labels, title=TITLES[n], height=260, buffer_length=buffer_length,
                                     markers=True) for n in CURVES}
        #: run × matrix intruder counts at the last measurement (what the heatmap draws).
        self.matrix_data = pd.DataFrame({"run": [], "matrix": [], "intruders": []})
        self.heat_pipe = Pipe(data=None)
        self.heat_slot = pn.Column(Markdown("*intruders per matrix: waiting for the first measurement…*"),
                                   sizing_mode="stretch_width")
        self.table = pn.pane.DataFrame(pd.DataFrame(), sizing_mode="stretch_width")
        self.message = Markdown("")
        self._new_rows = 0
        self._layout = pn.Column(pn.Row(self.series["val_loss"], self.series["pretrain_loss"], sizing_mode="stretch_width"),
                                 pn.Row(self.series["intruders_total"], self.heat_slot, sizing_mode="stretch_width"),
                                 self.message, self.table, sizing_mode="stretch_width")
        self.start_polling()

    @property
    def buffers(self) -> dict:
        """(run label, quantity) → the Buffer its curve draws."""
        return {(lab, n): self.series[n].buffers[lab] for lab in self.labels for n in CURVES}

    def is_busy(self) -> bool:
        return any(r.running for r in self.runs)

    def read(self) -> int:
        total = 0
        for feed, lab in zip(self.feeds, self.labels):
            rows = feed.rows()
            total += len(rows)
            for name in CURVES:  # the run's column `name` is curve `lab` of plot `name`
                self.series[name].add_rows([{"step": r["step"], lab: r[name]} for r in rows if name in r])
        self._new_rows += total
        return total

    def flush(self) -> None:
        for ts in self.series.values():
            ts.flush()
        if self._new_rows:
            self._new_rows = 0
            self.refresh_summary()

    def show_error(self, exc) -> None:
        self.message.object = f"⚠ {error_text(exc)}"

    def refresh_summary(self) -> None:
        """Table of final numbers and run × matrix intruders, from :func:`compare_runs` (the core)."""
        ds = compare_runs(self.runs)
        self.table.object = summary_table(ds).round(4).reset_index()
        if "intruders" in ds:
            frame = ds.intruders.to_dataframe().reset_index().dropna(subset=["intruders"])
            frame["matrix"] = frame["matrix"].map(short_name)
            self.matrix_data = frame[["run", "matrix", "intruders"]]
            if not len(self.matrix_data):
                return
            self.heat_pipe.send(self.matrix_data)
            if not isinstance(self.heat_slot.objects[0], pn.pane.HoloViews):
                heat = hv.DynamicMap(lambda data: hv.HeatMap(data, ["matrix", "run"], "intruders"),
                                     streams=[self.heat_pipe]).opts(
                    cmap="reds", colorbar=True, tools=["hover"], responsive=True, height=260, xrotation=60,
                    framewise=True, title="intruders per matrix at the last measurement")
                self.heat_slot.objects = [pn.pane.HoloViews(heat, sizing_mode="stretch_width", height=280,
                                                            linked_axes=False)]

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
        frames = [pd.DataFrame({"index": ds.index.values, "sigma": ds[f"singular_values_{w}"].sel(matrix=first).values,
                                "when": w}).dropna() for w in ("before", "after")]
        self.pipe.send(pd.concat(frames, ignore_index=True))
        self.ranks.object = ds[["effective_rank_before", "effective_rank_after", "numerical_rank_before", "numerical_rank_after"]].to_dataframe().round(3)
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
