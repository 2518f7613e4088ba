"""The bad-input table of issue #17 for the CLI and the save/load/validation API.

Every row asserts: the workbench error type (CLI: exit 2 and ONE line ``workbench: error: ...``, no
traceback), that the message names the fix, and that nothing on disk changed.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import xarray as xr

from workbench import cli, data, models, notebook, open_record, save_record
from workbench.errors import ConfigError, CorruptFileError, MissingPathError, NotFoundError, explain

SMALL = ["--data-options", '{"n_docs": 20, "n_val_docs": 4}']
DS = xr.Dataset({"loss": ("step", [1.0, 2.0])}, coords={"step": [1, 2]})


def _snapshot(root) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A working folder with things a careless command could destroy."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "foreign.zarr").mkdir()
    (tmp_path / "foreign.zarr" / "thesis.tex").write_text("years of work")
    (tmp_path / "notes.nc").write_text("not a record")
    (tmp_path / "latin1.jsonl").write_bytes('{"text": "caf\xe9 cr\xe8me"}\n'.encode("latin-1"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n\ncr\xe8me".encode("latin-1"))
    (tmp_path / "garbage.pt").write_bytes(b"\x00\x01 not a checkpoint")
    return tmp_path


CLI_CASES = [
    (["train", "--steps", "0"], "--steps must be ≥ 1"),
    (["train", "--steps", "-5"], "--steps must be ≥ 1"),
    (["train", "--out", "nodir/r.nc"], "Create it first"),
    (["train", "--out", "r.csv"], "extension must be one of .nc, .zarr"),
    (["train", "--out", ""], "pass a file name"),
    (["train", "--out", "sub/"], "pass a file name inside it"),
    (["train", "--out", "sub"], "Rename the path"),
    (["train", "--out", "foreign.zarr"], "Refusing to overwrite"),
    (["train", "--out", "notes.nc"], "Refusing to overwrite"),
    (["train", "--checkpoint", "nodir/c.pt"], "Create it first"),
    (["train", "--checkpoint", "sub"], "pass a file name inside it"),
    (["train", "--out", "x.nc", "--checkpoint", "x.nc"], "give them different names"),
    (["train", "--out", "/sys/r.nc"], "save to a folder you can write to"),
    (["train", "--lr", "-1", *SMALL], "must be greater than 0"),
    (["train", "--lr", "0", *SMALL], "must be greater than 0"),
    (["train", "--batch-size", "0", *SMALL], "must be at least 1"),
    (["train", "--schedule", "cosin", *SMALL], "valid options include"),
    (["train", "--optimizer", "adamz", *SMALL], "valid options include"),
    (["train", "--log-every", "0", *SMALL], "must be at least 1"),
    (["train", "--set", "warmup_steps=-1", *SMALL], "must be at least 0"),
    (["train", "--set", "max_steps=0", *SMALL], "must be at least 1"),
    (["train", "--set", "foo=1"], "settable:"),
    (["train", "--set", "lr"], "NAME=VALUE"),
    (["train", "--data-options", "{bad"], "pass a JSON object"),
    (["train", "--data-options", "[1]"], "must be a JSON object"),
    (["train", "--data-options", '{"n_doc": 5}'], "it accepts: block_size, n_docs"),
    (["train", "--data-options", '{"n_docs": 0}'], "positive integer"),
    (["train", "--preset", "gpt2-1n", *SMALL], "Did you mean 'gpt2-1m'"),
    (["train", "--data", "storiez"], "Did you mean 'stories'"),
    (["train", "--data", "missing.jsonl"], "Pass an existing"),
    (["train", "--data", "latin1.jsonl"], "convert it to UTF-8"),
    (["train", "--data", "latin1.txt"], "convert it to UTF-8"),
    (["train", "--resume", "nope.pt"], "Pass the path written by run.save_checkpoint"),
    (["train", "--resume", "garbage.pt"], "not a workbench checkpoint"),
    (["serve", "--port", "70000"], "between 0 and 65535"),
    (["serve", "--port", "-1"], "between 0 and 65535"),
    (["serve", "--max-running", "0"], "--max-running must be ≥ 1"),
    (["serve", "--address", ""], "use 127.0.0.1|such as 127.0.0.1"),
    (["serve", "--address", "no-such-host.invalid"], "use 127.0.0.1"),
    (["serve", "--address", "192.0.2.1"], "Pick another --port"),
]
if not torch.cuda.is_available():
    CLI_CASES.append((["train", "--device", "cuda", *SMALL], "Use device='auto' or 'cpu'"))


@pytest.mark.parametrize("argv, fix", CLI_CASES, ids=[" ".join(a)[:60] for a, _ in CLI_CASES])
def test_cli_bad_input_is_one_line_with_the_fix(world, capsys, argv, fix):
    before = _snapshot(world)
    code = cli.main(argv)  # a traceback would raise out of main() and fail the test
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("workbench: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    assert any(part in err for part in fix.split("|")), err
    assert _snapshot(world) == before


def test_cli_port_in_use_is_refused_before_serving(world, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["serve", "--port", str(port)]) == 2
    assert "Pick another --port" in capsys.readouterr().err


def _model_dir(root, name="m"):
    m = models.build("gpt2-1m", n_layer=1, n_embd=16, n_head=2, vocab_size=64)
    return models.save(m, root / name)


def _corrupt_config(root):
    d = _model_dir(root, "badcfg")
    (d / "config.json").write_text("{not json")
    return d


def _truncated_weights(root):
    d = _model_dir(root, "cut")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:200])
    return d


def _no_weights(root):
    d = _model_dir(root, "noweights")
    (d / "model.safetensors").unlink()
    return d


def _notebook(root):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell("steps: int = 3\nlr: float = 0.1", metadata={"tags": ["parameters"]})])
    nbformat.write(nb, root / "t.ipynb")
    return root / "t.ipynb"


def _mkdir(path):
    return lambda r: (r / path).mkdir()


def _write(path):
    return lambda r: (r / path).write_text("x")


def _nothing(r):
    return None


API_CASES = [  # name, setup(root) -> prerequisite, call(root, prerequisite), error type, fix named
    ("save_record .csv", _nothing, lambda r, _: save_record(DS, r / "r.csv"), ConfigError, "Rename the path"),
    ("save_record ''", _nothing, lambda r, _: save_record(DS, ""), ConfigError, "pass a file name"),
    ("save_record folder/", _nothing, lambda r, _: save_record(DS, str(r / "sub") + "/"), ConfigError,
     "pass a file name inside it"),
    ("save_record ..", _nothing, lambda r, _: save_record(DS, r / "sub" / ".."), ConfigError, "pass a file name"),
    ("save_record .nc over folder", _mkdir("d.nc"), lambda r, _: save_record(DS, r / "d.nc"), ConfigError,
     "Pick another file name"),
    ("save_record missing folder", _nothing, lambda r, _: save_record(DS, r / "no" / "r.nc"), MissingPathError,
     "Create it first"),
    ("save_record over foreign zarr folder", _nothing, lambda r, _: save_record(DS, r / "foreign.zarr"), ConfigError,
     "move it away"),
    ("save_record over foreign .nc file", _nothing, lambda r, _: save_record(DS, r / "notes.nc"), ConfigError,
     "move that file away"),
    ("save_record .zarr over a file", _write("f.zarr"), lambda r, _: save_record(DS, r / "f.zarr"), ConfigError,
     "move it away"),
    ("open_record garbage", _nothing, lambda r, _: open_record(r / "notes.nc"), CorruptFileError,
     "restore it from a copy"),
    ("build n_layers", _nothing, lambda r, _: models.build("gpt2-1m", n_layers=2), ConfigError,
     "did you mean 'n_layer'"),
    ("build llama n_layer", _nothing, lambda r, _: models.build("llama-1m", n_layer=2), ConfigError,
     "num_hidden_layers"),
    ("models.save missing folder", _nothing, lambda r, _: models.save(models.build("gpt2-1m"), r / "no" / "m"),
     MissingPathError, "Create it first"),
    ("models.save ''", _nothing, lambda r, _: models.save(models.build("gpt2-1m"), ""), ConfigError,
     "pass a file name"),
    ("models.save over foreign folder", _nothing, lambda r, _: models.save(models.build("gpt2-1m"), r / "foreign.zarr"),
     ConfigError, "move it away"),
    ("models.save over a file", _nothing, lambda r, _: models.save(models.build("gpt2-1m"), r / "notes.nc"),
     ConfigError, "move it away"),
    ("models.load bad config", _corrupt_config, lambda r, d: models.load(d), CorruptFileError, "Save it again"),
    ("models.load truncated weights", _truncated_weights, lambda r, d: models.load(d), CorruptFileError,
     "Save it again"),
    ("models.load no weights", _no_weights, lambda r, d: models.load(d), CorruptFileError, "Save it again"),
    ("latin-1 jsonl", _nothing, lambda r, _: data.load(r / "latin1.jsonl"), ConfigError, "iconv -f latin1"),
    ("latin-1 txt", _nothing, lambda r, _: data.load(r / "latin1.txt"), ConfigError, "iconv -f latin1"),
    ("unknown notebook parameter", _notebook, lambda r, nb: notebook.execute(nb, r / "o.ipynb", {"max_steps": 5}),
     ConfigError, "did you mean 'steps'"),
    ("notebook missing", _nothing, lambda r, _: notebook.execute(r / "none.ipynb", r / "o.ipynb", {}),
     MissingPathError, "Pass the path of an .ipynb"),
    ("unknown dataset", _nothing, lambda r, _: data.load("storiez"), NotFoundError, "Did you mean 'stories'"),
]


@pytest.mark.parametrize("name, setup, call, kind, fix", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input_raises_with_the_fix_and_changes_nothing(world, name, setup, call, kind, fix):
    prerequisite = setup(world)
    before = _snapshot(world)
    with pytest.raises(kind) as err:
        call(world, prerequisite)
    message = explain(err.value)
    assert message is not None and fix in message, message
    assert _snapshot(world) == before
