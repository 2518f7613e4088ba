"""Headless tests of the rich/lazy views: init editor (preview, Train → map) and the sweep regime map."""

from __future__ import annotations

import time

import numpy as np
import panel as pn
import pytest
import xarray as xr

import widgets
from workbench.regime import InitLab
from widgets.regime import InitEditor, RegimeMap

TINY = dict(n_hidden=12, steps=2, n_train=32, n_probe=6)


def test_init_editor_preview_follows_the_dials_and_train_adds_a_point():
    lab = InitLab(**TINY)
    view = widgets.view(lab)
    assert isinstance(view, InitEditor)
    pn.panel(view).get_root()
    assert len(view.preview_pipe.data) == 12 and view.erank.value > 2  # full-rank Gaussian
    lab.rank = 1
    assert len(view.preview_pipe.data["sigma"].dropna()) == 12 and view.erank.value == pytest.approx(1.0, abs=1e-3)
    view.train_button.clicks += 1
    lab.wait(timeout=120)
    deadline = time.time() + 10
    while lab.running and time.time() < deadline:
        time.sleep(0.05)
    assert view.poll() == 1
    data = view.points.data
    assert len(data) == 1 and data["rank"].iloc[0] == 1.0 and 0 <= data["kernel_alignment"].iloc[0] <= 1
    assert "trained" in view.status.object
    view.stop_polling()


def test_init_editor_reports_a_bad_dial_without_crashing():
    lab = InitLab(**TINY)
    view = InitEditor(lab)
    lab.rank = 50  # above n_hidden
    assert "exceeds n_hidden" in view.status.object
    view.train_button.clicks += 1  # refused with a message, nothing starts
    assert not lab.running and "exceeds" in view.status.object
    view.stop_polling()


def test_regime_map_of_a_sweep():
    rank, scale, seed = [1, 4, 12], [0.5, 1.0], [0, 1]
    vals = np.arange(12, dtype=float).reshape(3, 2, 2)
    ds = xr.Dataset({"kernel_alignment": (("rank", "scale", "seed"), vals),
                     "delta_rel_norm": (("rank", "scale", "seed"), -vals),
                     "status": (("rank", "scale", "seed"), np.full((3, 2, 2), "ok"))},
                    coords={"rank": rank, "scale": scale, "seed": seed})
    ds["status"][0, 0, 0] = "error"
    view = RegimeMap(ds, x="rank", y="scale")
    pn.panel(view).get_root()
    frame = view.pipe.data
    assert len(frame) == 6
    cell = frame[(frame["rank"] == "1") & (frame["scale"] == "0.5")]["value"].item()
    assert cell == pytest.approx(1.0)  # the failed seed-0 point (value 0) is skipped
    view.var = "delta_rel_norm"
    assert view.pipe.data["value"].max() <= 0


def test_recipe_editor_lists_recipes_previews_and_applies():
    import torch

    from widgets.regime import RecipeEditor
    from workbench import models

    net = models.rnn(n_hidden=10)
    before = net.weight_rec.detach().clone()
    view = RecipeEditor(net)
    pn.panel(view).get_root()
    assert set(view.table.value["name"]) >= {"scale", "low_rank", "aligned", "orthogonal", "gaussian"}
    view.recipe.rank, view.recipe.include = 2, "weight_rec"
    view.preview_button.clicks += 1
    assert torch.equal(net.weight_rec.detach(), before) and "previewed 1" in view.status.object
    assert int(view.summary.value["numerical_rank_after"].iloc[0]) == 2 and len(view.pipe.data) == 10
    view.recipe.rank = 50  # too large: a message, nothing applied
    view.apply_button.clicks += 1
    assert "model unchanged" in view.status.object and torch.equal(net.weight_rec.detach(), before)
    view.recipe.rank = 3
    view.apply_button.clicks += 1
    assert torch.linalg.matrix_rank(net.weight_rec.detach()).item() == 3
    view.recipe_name = "scale"
    assert view.recipe.factor == 1.0
