"""Records: a run's labelled ``xarray.Dataset`` saved so that it explains itself.

A record's attributes carry who made it: ``run_id``, ``parent`` (lineage), ``stage`` (class name),
``config`` (the stage's declared parameters, JSON), ``model`` and ``data`` (JSON descriptions),
``seed``, ``status`` (``ok``, ``stopped``, ``diverged``…), ``versions`` (JSON) and ``created``.
netCDF attributes must be plain, so dicts are stored as JSON strings; :func:`meta` decodes them.

Files are written atomically: to a temporary file beside the target, then ``os.replace`` — a crash
never leaves a half-written record under the real name. ``.nc`` files use netCDF4/HDF5 (h5netcdf);
a path ending in ``.zarr`` is written as a zarr store.

>>> import xarray as xr, tempfile, os
>>> ds = xr.Dataset({"loss": ("step", [2.0, 1.0])}, coords={"step": [1, 2]})
>>> path = os.path.join(tempfile.mkdtemp(), "run.nc")
>>> save(ds, path, config={"lr": 0.1}).name
'run.nc'
>>> meta(open_record(path))["config"]
{'lr': 0.1}
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import CorruptFileError, MissingPathError
from .vocabulary import upgrade

JSON_ATTRS = ("config", "model", "data", "versions", "extra")


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    import importlib.metadata as md

    out = {}
    for pkg in ("workbench", "torch", "transformers", "peft", "xarray", "numpy", "param"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def _encode_attrs(attrs: dict) -> dict:
    out = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, (dict, list, tuple)) or key in JSON_ATTRS:
            out[key] = json.dumps(value, default=str, sort_keys=True)
        elif isinstance(value, (bool, np.bool_)):
            out[key] = int(value)
        elif isinstance(value, (str, int, float, np.integer, np.floating)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def annotate(ds: xr.Dataset, **attrs) -> xr.Dataset:
    """A copy of ``ds`` with encoded attributes added (dicts become JSON)."""
    out = ds.copy()
    out.attrs.update(_encode_attrs(attrs))
    out.attrs.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    out.attrs.setdefault("run_id", new_run_id())
    out.attrs.setdefault("versions", json.dumps(versions(), sort_keys=True))
    return out


def meta(ds: xr.Dataset) -> dict:
    """A record's attributes with JSON attributes decoded back into dicts."""
    out = dict(ds.attrs)
    for key in JSON_ATTRS:
        if isinstance(out.get(key), str):
            try:
                out[key] = json.loads(out[key])
            except json.JSONDecodeError:
                pass
    return out


def _prepare(ds: xr.Dataset) -> xr.Dataset:
    """Make a dataset netCDF-safe: string coords as fixed str, object arrays to str."""
    ds = ds.copy()
    for name, var in list(ds.variables.items()):
        if var.dtype == object:
            ds[name] = var.astype(str)
    return ds


def save(ds: xr.Dataset, path: str | os.PathLike, **attrs) -> Path:
    """Write ``ds`` (plus ``attrs``) atomically to ``path`` (``.nc`` or ``.zarr``)."""
    path = Path(path)
    if not path.parent.exists():
        raise MissingPathError(f"Cannot save the record to {str(path)!r}: the folder {str(path.parent)!r} does not exist. Create it first.")
    ds = _prepare(annotate(ds, **attrs))
    if path.suffix == ".zarr":
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            ds.to_zarr(tmp, mode="w")
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp_name, engine="h5netcdf", invalid_netcdf=True)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def open_record(path: str | os.PathLike) -> xr.Dataset:
    """Load a saved record fully into memory (the file is closed again).

    Raises ``MissingPathError`` for a missing path and ``CorruptFileError`` for a truncated or
    non-record file, naming the path.
    """
    path = Path(path)
    if not path.exists():
        raise MissingPathError(f"No record at {str(path)!r}. Pass the path of a file written by save() or Run.save_record().")
    try:
        if path.suffix == ".zarr" or path.is_dir():
            return upgrade(xr.open_zarr(path).load())
        return upgrade(xr.load_dataset(path, engine="h5netcdf"))
    except Exception as exc:  # h5py / zarr raise many kinds for damaged files
        raise CorruptFileError(f"Could not read the record {str(path)!r}: the file is truncated, damaged or not a "
                               f"workbench record ({type(exc).__name__}: {exc}). Re-run or restore it from a copy.") from None
