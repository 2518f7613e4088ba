"""Shared fixtures (small built-in data, a tiny run) and the test tiers.

Every test carries exactly one tier marker, given by the folder it lives in, so a tier can be run alone:

=========  ======================  ==============================================================
tier       folder                  what it needs
=========  ======================  ==============================================================
unit       ``tests/unit``          tiny models on CPU; the fast tier (``make test-unit``, with the
                                   docstring examples, minus tests also marked ``slow``)
view       ``tests/ui`` (headless) Panel/HoloViews objects built in-process, no browser
browser    ``tests/ui``            a real Debian chromium through Playwright (marked in the file)
notebook   ``tests/notebooks``     gallery notebooks executed by papermill in the workbench kernel
=========  ======================  ==============================================================

``slow`` marks any test over ~20 s on 2 cores; ``make test-unit`` leaves those out.
"""

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


TIERS = {"unit": "unit", "ui": "view", "notebooks": "notebook"}


def pytest_collection_modifyitems(config, items):
    """Give each collected test its tier marker from its folder (browser tests keep their own marker)."""
    for item in items:
        parts = item.nodeid.split("/")
        if parts[0] in ("workbench", "widgets"):
            tier = "unit"  # a docstring example (--doctest-modules)
        elif len(parts) >= 3 and parts[0] == "tests":
            tier = TIERS.get(parts[1])
        else:
            tier = None
        if tier is None:
            continue
        if tier == "view" and item.get_closest_marker("browser"):
            continue
        item.add_marker(getattr(pytest.mark, tier))
