"""Headless tests of the fine-tuning views: build the Bokeh models, poll, click, check the streams got data."""

from __future__ import annotations

import panel as pn
import pytest
import torch

import widgets
from widgets.finetune import CompareRuns, InitPanel, MitigationPanel
from widgets.heatmap import MatrixHeatmap
from widgets.monitor import TrainingMonitor
from widgets.spectrum import SpectrumExplorer
from workbench import data, models
from workbench.finetune import FineTune, fresh_copy

SMALL = dict(batch_size=4, eval_every=2, intruders_every=2, eval_batches=1, init_batches=1, lr=1e-2)


@pytest.fixture(scope="module")
def ds():
    return data.load("recipes", n_docs=30, n_val_docs=10, block_size=32)


@pytest.fixture(scope="module")
def base(ds):
    return models.build("gpt2-1m", data=ds, n_layer=1)


@pytest.fixture(scope="module")
def forget():
    return data.load("stories", n_docs=1, n_val_docs=8, block_size=32)


def test_finetune_view_is_registered_and_streams_intruders(base, ds, forget):
    ft = FineTune(fresh_copy(base), ds, method="lora", rank=2, forget_data=forget, **SMALL)
    view = widgets.view(ft)
    assert isinstance(view, TrainingMonitor)  # the one monitor, configured for fine-tuning
    root = pn.panel(view).get_root()
    assert root is not None
    shown = set(view.controls.parameters)
    assert "lr" in shown and not shown & {"method", "rank", "init", "target_modules"}  # fixed at construction
    assert "lora r=2" in view.header
    ft.run(4, progress=False)
    view.poll()
    assert not view.alert.visible, view.alert.object
    heat = view.part("intruders")  # the SpectraProbe's heatmap, by shape
    assert isinstance(heat, MatrixHeatmap)
    assert set(heat.frame("intruders").step) == {0, 2, 4} and len(heat.frame("intruders")) == 3 * len(ft.target_matrices)
    assert isinstance(view.part("delta_effective_rank"), MatrixHeatmap)  # the DeltaProbe's
    assert len(view.buffers["pretrain_loss"].data) == 3
    mitigation = next(e for e in view.extras if isinstance(e, MitigationPanel))
    mitigation.mitigate_button.clicks += 1
    assert "intruders" in mitigation.result.object.columns and len(mitigation.result.object) == 2, mitigation.message.object
    explorer = next(e for e in view.extras if isinstance(e, SpectrumExplorer))
    assert not explorer.alert.visible and explorer.matrix is not None
    view.stop_polling()


def test_compare_runs_panel_updates_live(base, ds, forget):
    runs = [FineTune(fresh_copy(base), ds, method="full", forget_data=forget, **SMALL),
            FineTune(fresh_copy(base), ds, method="lora", rank=1, forget_data=forget, **SMALL),
            FineTune(fresh_copy(base), ds, method="lora_sb", rank=2, forget_data=forget, **SMALL)]
    panel = CompareRuns(runs)
    pn.panel(panel).get_root()
    assert panel.poll() == 0
    for run in runs:
        run.run(2, progress=False)
    assert panel.poll() > 0
    for label in ("full", "lora r=1", "lora_sb r=2"):
        assert len(panel.buffers[(label, "val_loss")].data) == 2
        assert len(panel.buffers[(label, "intruders_total")].data) == 2
    table = panel.table.object
    assert list(table["run"]) == ["full", "lora r=1", "lora_sb r=2"]
    assert {"forgetting", "final_intruders", "mean_delta_effective_rank"} <= set(table.columns)
    heat = panel.matrix_data
    assert set(heat["run"]) == {"full", "lora r=1", "lora_sb r=2"}
    runs[1].run(2, progress=False)
    assert panel.poll() > 0 and len(panel.buffers[("lora r=1", "val_loss")].data) == 3
    panel.stop_polling()
    with pytest.raises(ValueError, match="distinct labels"):
        CompareRuns([runs[0], runs[0]])


def test_init_panel_lists_recipes_and_previews(base):
    from workbench.init import RECIPES

    model = fresh_copy(base)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    panel = InitPanel(model)
    pn.panel(panel).get_root()
    assert list(panel.recipe_table.value["name"]) == RECIPES.names()
    assert "pissa" in set(panel.lora_table.value["name"])
    panel.choice.value = "low_rank"
    panel.recipe.param.update(rank=2, include=r"c_fc")
    panel.preview_button.clicks += 1
    assert "⚠" not in panel.message.object, panel.message.object
    assert set(panel.pipe.data["when"]) == {"before", "after"}
    assert (panel.ranks.object["numerical_rank_after"] == 2).all()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # preview modifies nothing
    panel.recipe.param.update(include=r"no_such_matrix")
    panel.preview_button.clicks += 1
    assert "⚠" in panel.message.object


def test_init_panel_vocabulary_preview(base):
    panel = InitPanel(fresh_copy(base))
    panel.vocab_init.value = "zero"
    panel.vocab_button.clicks += 1
    table = panel.vocab_table.object
    assert table.loc["new rows (zero)", "mean ‖e‖"] == 0 and table.loc["existing rows", "rows"] == 512
