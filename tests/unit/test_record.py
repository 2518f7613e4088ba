"""History → record, atomic save/open, lineage, damaged files."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import workbench as wb
from workbench import History, open_record, save_record
from workbench.errors import CorruptFileError, MissingPathError


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


def test_save_is_atomic_and_never_leaves_partial_files(tmp_path, monkeypatch):
    ds = xr.Dataset({"loss": ("step", [1.0])}, coords={"step": [1]})
    save_record(ds, tmp_path / "a.nc")

    def crash_midway(self, path, *args, **kwargs):  # a writer that dies after writing half a file (disk full, kill)
        with open(path, "wb") as f:
            f.write(b"\x89HDF\r\n partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", crash_midway)
    with pytest.raises(OSError, match="No space"):
        save_record(ds.assign(loss=("step", [9.0])), tmp_path / "a.nc")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["a.nc"]  # no temp leftovers; original intact
    assert float(open_record(tmp_path / "a.nc").loss[0]) == 1.0


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
