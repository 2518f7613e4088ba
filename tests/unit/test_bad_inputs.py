"""Every bad input named in the core issue gets a clear error and changes nothing."""

from __future__ import annotations

import pytest
import torch

from workbench import Run, data, models
from workbench.errors import ConfigError, DeviceError, MissingPathError, NotFoundError


def test_unknown_preset_lists_known_ones(stories):
    with pytest.raises(NotFoundError, match="gpt2-1m") as err:
        Run("gpt2-1n", stories)
    assert "Did you mean 'gpt2-1m'" in str(err.value)


def test_unknown_dataset_and_missing_path():
    with pytest.raises(NotFoundError, match="stories"):
        data.load("storiez")
    with pytest.raises(MissingPathError):
        data.load("/no/such/file.jsonl")
    with pytest.raises(MissingPathError, match="No model folder"):
        models.load("./no/such/model")


def test_hub_id_offline_says_to_pass_a_local_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="local path"):
        models.load("some-org/some-model")


def test_empty_dataset(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ConfigError):
        data.load(tmp_path / "empty.txt")


@pytest.mark.parametrize("params, match", [
    (dict(batch_size=0), "batch_size"),
    (dict(lr=0.0), "lr"),
    (dict(lr=-1e-3), "lr"),
    (dict(optimizer="adamz"), "optimizer"),
    (dict(schedule="cosine_restarts"), "schedule"),
    (dict(autocast="fp8"), "autocast"),
])
def test_bad_parameters(stories, params, match):
    with pytest.raises(ValueError, match=match):
        Run("gpt2-1m", stories, **params)


def test_bad_parameter_set_later_leaves_run_usable(tiny_run):
    run = tiny_run()
    with pytest.raises(ValueError):
        run.lr = -1.0
    assert run.lr > 0
    run.step()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(stories):
    with pytest.raises(DeviceError, match="no CUDA"):
        Run("gpt2-1m", stories, device="cuda")


def test_unknown_device(stories):
    with pytest.raises(ConfigError, match="Unknown device"):
        Run("gpt2-1m", stories, device="tpu")


def test_model_without_trainable_parameters(stories):
    model = models.build("gpt2-1m", data=stories)
    model.requires_grad_(False)
    run = Run(model, stories, eval_every=0)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        run.step()


def test_run_n_must_be_a_count(tiny_run):
    with pytest.raises(ConfigError, match="whole number"):
        tiny_run().run(-3)
