"""The ``workbench`` command end to end (in-process), and notebook parameters under papermill."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workbench import cli, notebook
from workbench.checkpoint import read_checkpoint
from workbench.errors import ConfigError
from workbench.record import meta, open_record

SMALL = ["--data-options", '{"n_docs": 20, "n_val_docs": 4}', "--batch-size", "2", "--quiet"]


def test_train_saves_record_and_checkpoint_and_resumes(tmp_path, capsys):
    out, ckpt = tmp_path / "r.zarr", tmp_path / "c.pt"
    assert cli.main(["train", "--steps", "2", "--out", str(out), "--checkpoint", str(ckpt), *SMALL]) == 0
    assert meta(open_record(out))["status"] == "finished" and read_checkpoint(ckpt)["run"]["step"] == 2
    assert cli.main(["train", "--resume", str(ckpt), "--steps", "1", "--out", str(tmp_path / "r2.nc"), "--quiet"]) == 0
    assert int(open_record(tmp_path / "r2.nc").attrs["global_step"]) == 3
    printed = capsys.readouterr().out
    assert "record: " in printed and "checkpoint: " in printed
    assert sorted(os.listdir(tmp_path)) == ["c.pt", "r.zarr", "r2.nc"]


def test_a_diverged_run_still_saves_its_record(tmp_path, capsys):
    out = tmp_path / "r.nc"
    code = cli.main(["train", "--steps", "5", "--lr", "1e30", "--set", "grad_clip=0", "--out", str(out), *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert out.exists() and "record up to there is saved" in err


def test_injected_cell_checked_against_the_parameters_cell():
    declared = "steps: int = 60  # optimizer steps\nlr: float = 1e-3"
    notebook.check_history(["", declared, "# Parameters\nsteps = 5\n", "check_parameters()"])  # fine
    notebook.check_history(["", declared, "check_parameters()"])  # nothing injected: nothing to check
    with pytest.raises(ConfigError, match=r"\['max_steps'\].*did you mean 'steps'\?.*Valid parameters: steps, lr"):
        notebook.check_history(["", declared, "# Parameters\nmax_steps = 50\n", "check_parameters()"])


def test_a_list_parameter_passed_as_text_is_refused_with_the_yaml_way():
    declared = "seeds: list = [0, 1]\nsteps: int = 60"
    notebook.check_history(["", declared, "# Parameters\nseeds = [0, 1, 2]\n", "check_parameters()"])  # -y: a list
    with pytest.raises(ConfigError, match=r"\['seeds'\] are declared as lists.*-y 'seeds: \[0, 1, 2\]'"):
        notebook.check_history(["", declared, "# Parameters\nseeds = \"[0, 1, 2]\"\n", "check_parameters()"])  # -p


@pytest.mark.slow
@pytest.mark.notebook
def test_papermill_run_with_a_misspelled_parameter_stops_inside_the_kernel(tmp_path, monkeypatch):
    """The guard that works for a person running papermill by hand: it runs in the notebook itself."""
    import nbformat
    import papermill as pm
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[
        new_code_cell("steps: int = 3  # optimizer steps\nlr: float = 0.1", metadata={"tags": ["parameters"]}),
        new_code_cell("from workbench.notebook import check_parameters\ncheck_parameters()"),
        new_code_cell("print('trained', steps)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "t.ipynb")
    root = str(Path(__file__).resolve().parents[2])  # the kernel imports this checkout's workbench
    monkeypatch.setenv("PYTHONPATH", root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with pytest.raises(pm.PapermillExecutionError) as err:  # plain papermill: no wrapper involved
        pm.execute_notebook(str(tmp_path / "t.ipynb"), str(tmp_path / "o.ipynb"), parameters={"max_steps": 5},
                            kernel_name="python3", progress_bar=False)
    assert err.value.ename == "ConfigError" and "did you mean 'steps'" in err.value.evalue
