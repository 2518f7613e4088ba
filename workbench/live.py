"""Live records: a run publishes its history beside its record path as it trains; others follow it.

A run launched from the shell (``workbench train --out runs/run.nc``, one process or a ``torchrun`` job)
cannot be watched from a notebook through memory. So the writing process keeps a **journal** beside the
record, ``runs/run.nc.live``: JSON lines, append-only.

* The first line is the header (created atomically by :func:`workbench.atomic.write_bytes`, so a new run
  replaces an old journal whole): the record's attributes (run id, stage, config, model, data, seed …), the
  writer's pid and host.
* Each **publish** appends *one* line with the history rows and arrays logged since the last one, written
  by a single ``write`` on an ``O_APPEND`` descriptor. A reader only takes lines that end in a newline, so it
  sees a publish whole or not at all; a crash (even ``kill -9``) can only leave a partial last line, which
  is ignored: the journal stays readable.
* Publishes happen at a step boundary at most every ``every`` seconds (a clock read per step otherwise), and
  once more when a ``run()`` ends, with its status (``finished``, ``stopped``, ``diverged``, ``error``).
* When the final record is saved to the same path (``run.save_record``), the journal is removed: the record
  is then the whole story.

:class:`LiveRecord` (``open_record(path, follow=True)``) reads the journal incrementally into a
:class:`~workbench.history.History`, so the views that poll an in-process run's history show it the same
way. Its ``status`` is the writer's last word, or ``died`` when the writer's process is gone without one
(its record is still everything published until then). Journal values are exact: floats round-trip
through JSON, arrays keep their dtype, so the followed record equals the record the run saves.

>>> import os, tempfile, xarray as xr
>>> from workbench.history import History
>>> path = os.path.join(tempfile.mkdtemp(), "run.nc")
>>> h = History()
>>> pub = Publisher(path, h, attrs={"run_id": "abc", "stage": "Run"})
>>> h.log(1, loss=2.0); h.log(2, loss=1.5)
>>> pub.publish(), pub.end("finished")
(2, None)
>>> live = LiveRecord(path)
>>> live.status, live.global_step, live.record.loss.values.tolist()
('finished', 2, [2.0, 1.5])
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path

import numpy as np
import xarray as xr

from . import atomic
from .display import Displayable
from .errors import ConfigError, CorruptFileError, MissingPathError
from .history import History

SUFFIX = ".live"
MAGIC = "workbench-live"
VERSION = 1
ENDED = ("finished", "stopped", "diverged", "error")
#: a writer on another host is taken for dead after this long without a publish
STALE_AFTER_S = 600.0


def journal_path(record_path) -> Path:
    """The journal beside a record path: ``runs/run.nc`` → ``runs/run.nc.live``."""
    p = Path(os.path.expanduser(str(record_path)))
    return p if p.name.endswith(SUFFIX) else p.with_name(p.name + SUFFIX)


def record_path(journal) -> Path:
    """The record path a journal stands for (the inverse of :func:`journal_path`)."""
    p = Path(journal)
    return p.with_name(p.name[: -len(SUFFIX)]) if p.name.endswith(SUFFIX) else p


def is_journal(path) -> bool:
    """True for a file whose first line is a workbench journal header (what a new journal may replace)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return head == b"" or head.startswith(b'{"journal":"' + MAGIC.encode())


# ----------------------------------------------------------------------------- encoding
def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _encode_array(da: xr.DataArray) -> dict:
    out = da.to_dict(data="list")
    out["dtype"] = str(da.dtype)
    out["coord_dtypes"] = {k: str(c.dtype) for k, c in da.coords.items()}
    return out


def _decode_array(d: dict) -> xr.DataArray:
    dtype, coord_dtypes = d.pop("dtype", None), d.pop("coord_dtypes", {})
    da = xr.DataArray.from_dict(d)
    if dtype is not None:
        da = da.astype(dtype)
    for name, kind in coord_dtypes.items():
        if name in da.coords and kind != "object":
            da = da.assign_coords({name: da.coords[name].astype(kind)})
    return da


def _line(obj: dict) -> bytes:
    return (json.dumps(obj, default=_plain, separators=(",", ":")) + "\n").encode()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


# ----------------------------------------------------------------------------- writing
class Publisher:
    """Publishes ``history`` to the journal beside ``path`` (see the module docstring).

    ``attrs`` are the record's attributes (:func:`workbench.record.annotate` encodes them). Creating a
    Publisher writes the header (replacing an old journal at that path); :meth:`publish` appends what is
    new; :meth:`end` appends the outcome; :meth:`retire` removes the journal once the record is saved.
    """

    def __init__(self, path, history: History, attrs: dict | None = None, every: float = 1.0):
        if not (isinstance(every, (int, float)) and math.isfinite(every) and every >= 0):
            raise ConfigError(f"every must be a number of seconds ≥ 0 (0: publish at every step), got {every!r}.")
        from .record import SUFFIXES

        self.record_path = atomic.check_target(path, "record", SUFFIXES)
        self.path = journal_path(self.record_path)
        self.history, self.every = history, float(every)
        self.cursor, self.array_cursors = 0, {}
        self.ended = False
        self._last = time.monotonic()
        header = {"journal": MAGIC, "version": VERSION, "pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.time(), "attrs": dict(attrs or {})}
        atomic.write_bytes(self.path, _line(header), what="live record", owns=is_journal)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def _append(self, obj: dict, fsync: bool = False) -> None:
        if self._fd is None:
            raise ConfigError(f"The live record {str(self.path)!r} was retired (its record is saved); call "
                              "run.publish(path) again to publish a new one.")
        atomic.append(self._fd, _line(obj), self.path, what="live record", fsync=fsync)

    def publish(self, status: str = "running", **extra) -> int:
        """Append one line with everything logged since the last publish; returns the entries it holds."""
        rows, self.cursor = self.history.rows_since(self.cursor)
        arrays = {}
        for name in self.history.array_names():
            items, self.array_cursors[name] = self.history.arrays_since(name, self.array_cursors.get(name, 0))
            if items:
                arrays[name] = [[step, _encode_array(da)] for step, da in items]
        steps = [r["step"] for r in rows] + [s for items in arrays.values() for s, _ in items]
        self._append({"status": status, "step": max(steps, default=None), "time": time.time(), "rows": rows,
                      "arrays": arrays, **extra}, fsync=status in ENDED)
        self._last = time.monotonic()
        self.ended = status in ENDED
        return len(rows) + sum(len(v) for v in arrays.values())

    def maybe_publish(self) -> None:
        """Publish if ``every`` seconds have passed since the last publish (called at each step boundary)."""
        if time.monotonic() - self._last >= self.every:
            self.publish()

    def end(self, status: str, message: str = "", step: int | None = None) -> None:
        """Publish what is left with the outcome of the run (``finished``, ``stopped``, …) and fsync."""
        self.publish(status=status, message=message, global_step=step)

    def retire(self) -> None:
        """The record was saved: remove the journal (a follower then reads the record)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            if is_journal(self.path):
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    # -- as callbacks of a run ------------------------------------------------------------------
    def after_step(self, run, **_):
        self.maybe_publish()

    def after_run(self, run, status: str = "finished", **_):
        self.end(status, getattr(run, "message", ""), getattr(run, "global_step", None))


# ----------------------------------------------------------------------------- reading
class LiveRecord(Displayable):
    """A record being written by another process, read incrementally (``open_record(path, follow=True)``).

    ``update()`` reads what was published since the last call into ``history`` and returns how many entries
    came; ``record`` is the Dataset so far; ``status`` is ``running``, an outcome (``finished``,
    ``stopped``, ``diverged``, ``error``), or ``died`` (the writer is gone without saying how it ended);
    ``running`` is True while more may come; ``last_publish`` is the writer's clock at its last publish.
    Views poll ``history`` as they poll a live run's; in a notebook it displays as its live view.
    """

    def __init__(self, path, stale_after: float = STALE_AFTER_S):
        self.record_path = record_path(Path(os.path.expanduser(str(path))))
        self.path = journal_path(self.record_path)
        self.stale_after = stale_after
        self.history = History()
        self.header: dict = {}
        self.status, self.message, self.global_step = "running", "", 0
        self.source = "journal"
        self._offset, self._ino, self._partial, self._seen_step = 0, None, b"", -1
        self.last_publish = time.time()
        if not self.path.exists() and not self.record_path.exists():
            raise MissingPathError(f"Nothing to follow at {str(self.record_path)!r}: no record and no live journal "
                                   f"({self.path.name}). Start the run with --out pointing there (or run.publish(path)), "
                                   "or pass wait=SECONDS to wait for it.")
        self.update()

    @property
    def running(self) -> bool:
        """True while the writer may still publish (views keep polling)."""
        return self.status == "running"

    @property
    def attrs(self) -> dict:
        """The record's attributes as the writer declared them, with the status and step so far."""
        return {**self.header.get("attrs", {}), "status": self.status, "global_step": self.global_step}

    @property
    def record(self) -> xr.Dataset:
        """The record so far: the history as a labelled Dataset with the writer's attributes."""
        from .record import annotate
        from .vocabulary import upgrade

        ds = self.history.to_dataset()
        ds.attrs.update({k: v for k, v in self.attrs.items() if v is not None})
        return upgrade(annotate(ds))

    def update(self) -> int:
        """Read what is new; returns the number of history entries added (0 once the run has ended)."""
        if self.source == "record":
            return 0
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._from_record()
        if self._ino is not None and st.st_ino != self._ino:  # a new run replaced the journal: start over
            self.history.replace(History())
            self._offset, self._partial, self.header, self.status, self._seen_step = 0, b"", {}, "running", -1
            self.global_step = 0
        self._ino = st.st_ino
        n = 0
        if st.st_size > self._offset:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self._offset)
                    data = f.read()
            except FileNotFoundError:  # retired between the stat and the open
                return self._from_record()
            self._offset += len(data)
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()  # b"" after a complete line; else a publish still being written
            for line in lines:
                n += self._apply(line)
        if self.status == "running":
            self._check_writer()
        return n

    def _apply(self, line: bytes) -> int:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorruptFileError(f"The live record {str(self.path)!r} has a damaged line ({exc.msg}); it was not "
                                   "written by a workbench run. Open the saved record instead.") from None
        if obj.get("journal") == MAGIC:
            self.header = obj
            return 0
        for row in obj.get("rows", []):
            self.history.log(row.pop("step"), **row)
        n = len(obj.get("rows", []))
        for name, items in obj.get("arrays", {}).items():
            for step, d in items:
                self.history.log_array(step, name, _decode_array(d))
                n += 1
        if obj.get("step") is not None:
            self._seen_step = max(self._seen_step, int(obj["step"]))
            self.global_step = max(self.global_step, self._seen_step)
        if obj.get("global_step") is not None:
            self.global_step = int(obj["global_step"])
        self.status = obj.get("status", self.status)
        self.message = obj.get("message", "") or ""
        self.last_publish = obj.get("time", time.time())
        return n

    def _check_writer(self) -> None:
        pid, host = self.header.get("pid"), self.header.get("host")
        if host == socket.gethostname() and isinstance(pid, int):
            dead = not _pid_alive(pid)
            why = f"its process (pid {pid}) is gone"
        else:
            dead = time.time() - self.last_publish > self.stale_after
            why = f"nothing was published for {self.stale_after:.0f} s (writer on host {host})"
        if dead:
            self.status = "died"
            self.message = (f"The writer stopped without saying how the run ended: {why}. The record holds everything "
                            f"published until step {self.global_step}.")

    def _from_record(self) -> int:
        """The journal is gone: the final record was saved (read what we had not seen from it), or nothing
        is there (the writer died before saving)."""
        from .record import open_record

        if not self.record_path.exists():
            if self.status == "running":
                self.status, self.message = "died", "The live journal disappeared and no record was saved."
            return 0
        self.source = "record"
        if self.status in ENDED and self.header:
            return 0  # everything was published to us already
        ds = open_record(self.record_path)
        new = ds.sel(step=ds.step > self._seen_step) if "step" in ds.dims else ds
        n = 0
        scalars = [v for v in new.data_vars if set(new[v].dims) == {"step"}]
        for step in new.step.values if "step" in new.dims else []:
            row = {v: new[v].sel(step=step).item() for v in scalars}
            self.history.log(int(step), **{k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))})
            n += 1
            for name in [v for v in new.data_vars if "step" in new[v].dims and new[v].ndim > 1]:
                da = new[name].sel(step=step, drop=True)
                if bool(da.notnull().any()):
                    self.history.log_array(int(step), name, da)
                    n += 1
        self.header = {"attrs": {k: v for k, v in ds.attrs.items() if k not in ("status", "global_step")}}
        self.status, self.message = str(ds.attrs.get("status") or "finished"), ""
        if ds.attrs.get("global_step") is not None:
            self.global_step = int(ds.attrs["global_step"])
        return n

    def wait(self, timeout: float | None = None, interval: float = 0.5) -> LiveRecord:
        """Block until the run has ended (or ``timeout`` seconds), reading as it goes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running and (deadline is None or time.monotonic() < deadline):
            time.sleep(interval)
            self.update()
        return self

    def __repr__(self) -> str:
        return f"LiveRecord({str(self.record_path)!r}, status={self.status!r}, step={self.global_step})"


def follow(path, wait: float = 0.0, interval: float = 0.2) -> LiveRecord:
    """A :class:`LiveRecord` of ``path``, waiting up to ``wait`` seconds for the run to start publishing."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return LiveRecord(path)
        except MissingPathError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(interval)
