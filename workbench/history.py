"""The append-only history of a run, and its conversion to a labelled xarray record.

The training thread *appends*; everybody else *reads* with a cursor of their own. Two kinds of
entries:

* scalar rows — ``history.log(step, loss=…, lr=…)``: one row per call; several calls at the same step
  (the optimizer step, an eval probe, …) merge into one step of the record. A run's training rows carry
  ``loss``, ``lr``, ``grad_norm``, the task metrics and ``wall_time`` (seconds of training since the
  run's first step; see :class:`workbench.Run`);
* arrays — ``history.log_array(step, "effective_rank", da)`` with ``da`` an ``xr.DataArray`` over dims
  such as ``matrix`` or ``(matrix, index)``; the record stacks them along ``step``.

``to_dataset()`` gives the ``xr.Dataset`` with dim ``step`` (plus ``matrix``/``index`` for arrays),
missing values as NaN. Views poll ``rows_since(cursor)`` and never block the writer for long.

>>> h = History()
>>> h.log(1, loss=2.0); h.log(2, loss=1.5)
>>> rows, cursor = h.rows_since(0)
>>> [r["loss"] for r in rows], cursor
([2.0, 1.5], 2)
>>> float(h.to_dataset().loss.sel(step=2))
1.5
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr


def _plain(value: Any) -> Any:
    """Python scalar from tensors / numpy scalars (so rows are cheap and picklable)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value


class History:
    """Append-only rows and arrays, safe to read from other threads while a run appends."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rows: list[dict] = []
        self._arrays: dict[str, list[tuple[int, xr.DataArray]]] = {}

    # -- writing (training thread) -------------------------------------------------------------
    def log(self, step: int, **scalars: Any) -> None:
        """Append one row of scalar metrics at ``step``."""
        row = {"step": int(step)}
        row.update({k: _plain(v) for k, v in scalars.items()})
        with self._lock:
            self._rows.append(row)

    def log_array(self, step: int, name: str, data: xr.DataArray) -> None:
        """Append a labelled array (dims such as ``matrix`` or ``matrix, index``) at ``step``."""
        if not isinstance(data, xr.DataArray):
            raise TypeError(f"log_array({name!r}) expects an xarray.DataArray, got {type(data).__name__}.")
        if "step" in data.dims:
            raise ValueError(f"log_array({name!r}): the array already has a 'step' dim; log one step at a time.")
        with self._lock:
            self._arrays.setdefault(name, []).append((int(step), data.copy()))

    # -- reading (any thread) ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rows)

    def rows_since(self, cursor: int = 0) -> tuple[list[dict], int]:
        """Rows appended after ``cursor`` and the new cursor (the number of rows seen)."""
        with self._lock:
            rows = self._rows[cursor:]
            return [dict(r) for r in rows], cursor + len(rows)

    def arrays_since(self, name: str, cursor: int = 0) -> tuple[list[tuple[int, xr.DataArray]], int]:
        """``(step, array)`` entries of ``name`` after ``cursor`` and the new cursor."""
        with self._lock:
            items = self._arrays.get(name, [])[cursor:]
            return list(items), cursor + len(items)

    def array_names(self) -> list[str]:
        with self._lock:
            return list(self._arrays)

    def latest(self, name: str, default: Any = None) -> Any:
        """The most recent value of scalar ``name`` (or array ``name``)."""
        with self._lock:
            if name in self._arrays and self._arrays[name]:
                return self._arrays[name][-1][1]
            for row in reversed(self._rows):
                if name in row and not (isinstance(row[name], float) and math.isnan(row[name])):
                    return row[name]
        return default

    def column(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of scalar ``name``."""
        with self._lock:
            pairs = [(r["step"], r[name]) for r in self._rows if name in r]
        if not pairs:
            return np.array([], dtype=int), np.array([], dtype=float)
        steps, values = zip(*pairs)
        return np.asarray(steps), np.asarray(values, dtype=float)

    # -- conversion ----------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """The record body: scalars over ``step``, arrays over ``step`` × their own dims."""
        with self._lock:
            rows = list(self._rows)
            arrays = {k: list(v) for k, v in self._arrays.items()}
        parts = []
        if rows:
            frame = pd.DataFrame(rows).groupby("step", sort=True).last()
            parts.append(xr.Dataset.from_dataframe(frame))
        for name, items in arrays.items():
            by_step: dict[int, xr.DataArray] = {}
            for step, da in items:  # a later entry at the same step wins
                by_step[step] = da
            steps = sorted(by_step)
            stacked = xr.concat([by_step[s].expand_dims(step=[s]) for s in steps], dim="step", join="outer",
                                fill_value=np.nan, coords="minimal", compat="override")
            parts.append(stacked.rename(name).to_dataset())
        if not parts:
            return xr.Dataset(coords={"step": np.array([], dtype=int)})
        ds = xr.merge(parts, join="outer", compat="override", combine_attrs="drop")
        return ds

    # -- persistence (checkpoints) -------------------------------------------------------------
    def state_dict(self) -> dict:
        with self._lock:
            return {"rows": [dict(r) for r in self._rows],
                    "arrays": {k: [(s, d.to_dict()) for s, d in v] for k, v in self._arrays.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Replace the contents with :meth:`state_dict` output; all or nothing (a damaged state changes nothing)."""
        rows = [dict(r) for r in state.get("rows", [])]
        if any("step" not in r for r in rows):
            raise ValueError("a history row has no 'step'")
        arrays = {k: [(int(s), xr.DataArray.from_dict(d)) for s, d in v] for k, v in state.get("arrays", {}).items()}
        with self._lock:
            self._rows, self._arrays = rows, arrays

    def replace(self, other: "History") -> None:
        """Take ``other``'s entries (this object stays the one views hold; their cursors see the new rows)."""
        with other._lock:
            rows, arrays = list(other._rows), {k: list(v) for k, v in other._arrays.items()}
        with self._lock:
            self._rows, self._arrays = rows, arrays

    def truncate(self, step: int) -> None:
        """Drop entries after ``step`` (used when resuming from an older checkpoint)."""
        with self._lock:
            self._rows = [r for r in self._rows if r["step"] <= step]
            self._arrays = {k: [(s, d) for s, d in v if s <= step] for k, v in self._arrays.items()}
