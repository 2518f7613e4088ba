"""History → record, atomic save/open, lineage, damaged files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import workbench as wb
from workbench import History, open_record, save_record
from workbench.errors import ConfigError, CorruptFileError, MissingPathError


def test_history_merges_rows_and_arrays():
    h = History()
    h.log(1, loss=2.0)
    h.log(1, val_loss=3.0)
    h.log(2, loss=1.0)
    h.log_array(2, "erank", xr.DataArray([1.0, 2.0], dims="matrix", coords={"matrix": ["a", "b"]}))
    h.log_array(4, "sv", xr.DataArray(np.ones((2, 3)), dims=("matrix", "index"), coords={"matrix": ["a", "b"]}))
    ds = h.to_dataset()
    assert list(ds.step.values) == [1, 2, 4]
    assert ds.loss.sel(step=1) == 2.0 and ds.val_loss.sel(step=1) == 3.0 and np.isnan(ds.val_loss.sel(step=2))
    assert ds.erank.dims == ("step", "matrix") and ds.sv.dims == ("step", "matrix", "index")
    rows, cursor = h.rows_since(1)
    assert cursor == 3 and [r["step"] for r in rows] == [1, 2]
    with pytest.raises(TypeError):
        h.log_array(5, "bad", [1, 2])


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_record_round_trip_and_lineage(tmp_path, tiny_run, suffix):
    run = tiny_run(label="baseline")
    run.run(3, progress=False)
    path = run.save_record(tmp_path / f"run{suffix}")
    rec = open_record(path)
    xr.testing.assert_allclose(rec.loss, run.record.loss)
    meta = wb.meta(rec)
    assert meta["run_id"] == run.run_id and meta["label"] == "baseline" and meta["config"]["lr"] == run.lr
    assert "torch" in meta["versions"] and meta["seed"] == 0


def test_failed_write_keeps_the_previous_file_and_names_the_problem(tmp_path):
    import errno

    from workbench import atomic
    from workbench.errors import SaveError

    ds = xr.Dataset({"loss": ("step", [1.0])}, coords={"step": [1]})
    save_record(ds, tmp_path / "a.nc")

    def dies_halfway(f):  # what a full disk does to a writer: half a file, then ENOSPC
        f.write(b"\x89HDF\r\n partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SaveError, match=r"'.*a\.nc': the disk is full\. The previous record .* unchanged"):
        atomic.write_file(tmp_path / "a.nc", dies_halfway, what="record")
    assert [p.name for p in tmp_path.iterdir()] == ["a.nc"]  # no temp leftovers; original intact
    assert float(open_record(tmp_path / "a.nc").loss[0]) == 1.0


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_saved_records_get_normal_permissions(tmp_path, suffix):
    ds = xr.Dataset({"loss": ("step", [1.0])}, coords={"step": [1]})
    mask = os.umask(0o022)
    try:
        path = save_record(ds, tmp_path / f"a{suffix}")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == (0o755 if suffix == ".zarr" else 0o644)


def test_stale_temporaries_of_crashed_saves_are_removed_by_the_next_save(tmp_path):
    ds = xr.Dataset({"loss": ("step", [1.0])}, coords={"step": [1]})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    (tmp_path / f".a.nc.{pid}.0badcafe.tmp").write_bytes(b"x" * 100)
    (tmp_path / f".b.nc.{pid}.0badcafe.tmp").write_bytes(b"other target")
    (tmp_path / f".a.zarr.{pid}.0badcafe.tmp").mkdir()
    save_record(ds, tmp_path / "a.nc")
    save_record(ds, tmp_path / "a.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".b.nc.{pid}.0badcafe.tmp", "a.nc", "a.zarr"]


def test_a_folder_left_aside_by_a_crashed_swap_is_recovered(tmp_path):
    ds = xr.Dataset({"loss": ("step", [1.0, 2.0])}, coords={"step": [1, 2]})
    save_record(ds, tmp_path / "a.zarr")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    os.rename(tmp_path / "a.zarr", tmp_path / f".a.zarr.{int(dead.stdout)}.0badcafe.old")  # killed between renames
    assert open_record(tmp_path / "a.zarr").loss.values.tolist() == [1.0, 2.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


def test_zarr_save_replaces_only_a_zarr_store(tmp_path):
    ds = xr.Dataset({"loss": ("step", [1.0])}, coords={"step": [1]})
    save_record(ds, tmp_path / "a.zarr")
    save_record(ds.assign(loss=("step", [5.0])), tmp_path / "a.zarr")
    assert float(open_record(tmp_path / "a.zarr").loss[0]) == 5.0
    (tmp_path / "a.zarr" / "ckpt.pt").write_bytes(b"someone else's file")  # the dashboard incident
    with pytest.raises(ConfigError, match="Refusing to overwrite"):
        save_record(ds, tmp_path / "a.zarr")
    assert (tmp_path / "a.zarr" / "ckpt.pt").read_bytes() == b"someone else's file"


def test_damaged_and_missing_records(tmp_path):
    ds = xr.Dataset({"loss": ("step", np.arange(100.0))}, coords={"step": np.arange(100)})
    save_record(ds, tmp_path / "r.nc")
    raw = (tmp_path / "r.nc").read_bytes()
    (tmp_path / "cut.nc").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(CorruptFileError, match="cut.nc"):
        open_record(tmp_path / "cut.nc")
    (tmp_path / "text.nc").write_text("not a record")
    with pytest.raises(CorruptFileError):
        open_record(tmp_path / "text.nc")
    with pytest.raises(MissingPathError):
        open_record(tmp_path / "none.nc")
    with pytest.raises(MissingPathError, match="does not exist"):
        save_record(ds, tmp_path / "no" / "dir" / "r.nc")
