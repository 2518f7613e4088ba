"""Shared fixtures: a private cache folder and small built-in data."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def stories():
    """A small built-in text dataset (shared, read-only)."""
    from workbench import data

    return data.load("stories", n_docs=200, n_val_docs=40)


@pytest.fixture
def tiny_run(stories):
    """A ~0.9M-param GPT-2 run on small data, fast settings."""
    from workbench import Run

    def make(**params):
        params.setdefault("batch_size", 4)
        params.setdefault("max_steps", 20)
        params.setdefault("eval_every", 0)
        params.setdefault("log_every", 2)
        return Run("gpt2-1m", stories, **params)

    return make
