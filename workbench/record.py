"""Records: a run's labelled ``xarray.Dataset`` saved so that it explains itself.

A record's attributes carry who made it: ``run_id``, ``parent`` (lineage), ``stage`` (class name),
``config`` (the stage's declared parameters, JSON), ``model`` and ``data`` (JSON descriptions),
``seed``, ``status`` (``ok``, ``stopped``, ``diverged``…), ``versions`` (JSON) and ``created``.
netCDF attributes must be plain, so dicts are stored as JSON strings; :func:`meta` decodes them.

Files are written atomically (:mod:`workbench.atomic`): beside the target, fsynced, renamed into place —
a crash never leaves a half-written record under the real name, and a failed save (disk full, read-only)
raises :class:`~workbench.errors.SaveError` and leaves the previous record intact. ``.nc`` files use
netCDF4/HDF5 (h5netcdf) and are built in memory first: HDF5 crashes the process when it flushes onto a
full disk, Python's own file writes do not. A path ending in ``.zarr`` is written as a zarr store, which
replaces only an existing zarr store (never another folder). Other extensions are refused.

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
import uuid
from pathlib import Path

import numpy as np
import xarray as xr

from . import atomic
from .errors import ConfigError, CorruptFileError, MissingPathError
from .vocabulary import upgrade

SUFFIXES = (".nc", ".zarr")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZARR_META = {"zarr.json", ".zgroup", ".zattrs", ".zmetadata"}

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


def encode_attrs(attrs: dict) -> dict:
    """Attributes as netCDF allows them: dicts and lists as JSON strings, bools as ints, None left out."""
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
    out.attrs.update(encode_attrs(attrs))
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


def is_netcdf(path: Path) -> bool:
    """True for an (HDF5 or classic) netCDF file, or an empty file: what a record save may replace."""
    with open(path, "rb") as f:
        head = f.read(8)
    return head == b"" or head == _HDF5_MAGIC or head[:3] == b"CDF"


def is_zarr_store(path: Path) -> bool:
    """True for a folder holding only a zarr store (so replacing it deletes nothing else)."""
    entries = list(path.iterdir())
    if not any(e.name in (".zgroup", "zarr.json") for e in entries):
        return False
    for e in entries:
        if e.name in _ZARR_META:
            continue
        if not (e.is_dir() and ((e / "zarr.json").exists() or (e / ".zarray").exists())):
            return False
    return True


def check_path(path: str | os.PathLike) -> Path:
    """Validate a record path before any work: extension, folder, an existing target of the right kind,
    write permission. Raises with the fix; writes nothing (a probe file is created and removed)."""
    target = atomic.check_target(path, "record", SUFFIXES)
    if target.exists():
        zarr = target.suffix == ".zarr"
        if target.is_dir() != zarr or not (is_zarr_store(target) if zarr else is_netcdf(target)):
            raise ConfigError(f"Refusing to overwrite {str(target)!r}: it is not a workbench {target.suffix} record. "
                              "Pick another name or move it away (nothing was changed).")
    atomic.check_writable(target, "record")
    return target


def save(ds: xr.Dataset, path: str | os.PathLike, **attrs) -> Path:
    """Write ``ds`` (plus ``attrs``) atomically to ``path`` (``.nc`` or ``.zarr``)."""
    path = atomic.check_target(path, "record", SUFFIXES)
    ds = _prepare(annotate(ds, **attrs))
    if path.suffix == ".zarr":
        return atomic.write_dir(path, lambda tmp: ds.to_zarr(tmp, mode="w", consolidated=False), what="record", owns=is_zarr_store)
    data = ds.to_netcdf(engine="h5netcdf", invalid_netcdf=True)  # in memory: see the module docstring
    return atomic.write_bytes(path, data, what="record", owns=is_netcdf)


def open_record(path: str | os.PathLike, follow: bool = False, wait: float = 0.0):
    """Load a saved record fully into memory (the file is closed again).

    ``follow=True`` returns a :class:`workbench.live.LiveRecord` instead: the record of a run another
    process is writing (``workbench train --out path``, ``run.publish(path)``), read as it grows —
    ``update()`` reads what is new, ``record`` is the Dataset so far, ``status`` says ``running``,
    ``finished``, ``stopped``… or ``died``; ``widgets.view(live)`` shows it live. ``wait`` is how many
    seconds to wait for the run to start publishing. A path whose record was never saved (the writer
    crashed) but whose live journal is there opens as what was published (``status`` ``died``).

    Raises ``MissingPathError`` for a missing path and ``CorruptFileError`` for a truncated or
    non-record file, naming the path.
    """
    from . import live

    if follow:
        return live.follow(path, wait=wait)
    path = Path(path)
    atomic.recover(path)
    if not path.exists() and live.journal_path(path).exists():
        return live.LiveRecord(path).record
    if not path.exists():
        raise MissingPathError(f"No record at {str(path)!r}. Pass the path of a file written by save() or Run.save_record().")
    try:
        if path.suffix == ".zarr" or path.is_dir():
            return upgrade(xr.open_zarr(path, consolidated=False).load())  # zarr 3 warns about consolidated metadata
        return upgrade(xr.load_dataset(path, engine="h5netcdf"))
    except Exception as exc:  # h5py / zarr raise many kinds for damaged files
        raise CorruptFileError(f"Could not read the record {str(path)!r}: the file is truncated, damaged or not a "
                               f"workbench record ({type(exc).__name__}: {exc}). Re-run or restore it from a copy.") from None
