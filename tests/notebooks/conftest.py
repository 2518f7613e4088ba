"""Run gallery notebooks with papermill, small parameters, and check their results files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = os.environ.get("WORKBENCH_KERNEL", "workbench")


@pytest.fixture
def run_notebook(tmp_path):
    """``run_notebook("00_tour", max_steps=5)`` executes ``notebooks/00_tour.ipynb`` with papermill
    (the workbench kernel, cwd = notebooks/) and returns the results path it was given."""

    def run(name: str, **params):
        from workbench.notebook import execute  # papermill, after refusing names the notebook does not declare

        results = tmp_path / f"{name}.nc"
        params.setdefault("results_path", str(results))
        params.setdefault("interactive", False)
        out = tmp_path / f"{name}.out.ipynb"
        execute(NOTEBOOKS / f"{name}.ipynb", out, parameters=params, kernel_name=KERNEL, cwd=str(NOTEBOOKS),
                progress_bar=False, log_output=False)
        path = Path(params["results_path"])
        assert path.exists(), f"{name} did not write its results to {path}"
        return path

    return run
