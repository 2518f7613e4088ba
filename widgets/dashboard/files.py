"""Each browser session's own results folder, and messages that show no server paths.

Every session of a dashboard server gets ``<results_dir>/sessions/<random id>/`` (created on its first
save). A visitor can write, list and open records only there, plus *read* the records the operator put
in ``results_dir`` itself (any subfolder except ``sessions/``). So visitor B can never overwrite, delete
or read visitor A's files, and ``..`` or absolute paths are refused.

Messages shown in a page name files relative to the session folder, never the server's paths
(:func:`public_message`); the server log keeps the details.

>>> import tempfile
>>> files = SessionFiles(tempfile.mkdtemp(), session_id="abc123")
>>> files.resolve("run.nc").name, files.display(files.resolve("sub/run.nc"))
('run.nc', 'sub/run.nc')
>>> files.resolve("../other/run.nc")
Traceback (most recent call last):
...
workbench.errors.ConfigError: '../other/run.nc' is outside this session's folder; give a file name such as run.nc.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

from workbench import errors
from workbench.errors import ConfigError

RECORD_SUFFIXES = (".nc", ".zarr")
SESSIONS = "sessions"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def readable_by_group(path: str | os.PathLike) -> None:
    """Give a saved file (or a folder tree such as a ``.zarr`` store) the usual ``0o666 & ~umask`` modes.

    Atomic saves write a temp file (``mkstemp``: mode 0600) and rename it; the result would be readable
    by the server's user only.
    """
    mask = _umask()
    root = Path(path)
    for p in [root, *(root.rglob("*") if root.is_dir() else [])]:
        mode = (0o777 if p.is_dir() else 0o666) & ~mask
        if stat.S_IMODE(p.stat().st_mode) != mode:
            p.chmod(mode)


class SessionFiles:
    """The folder of one browser session (see the module docstring)."""

    def __init__(self, results_dir: str | os.PathLike, session_id: str | None = None):
        self.results_dir = Path(results_dir).resolve()
        self.session_id = session_id or secrets.token_hex(6)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.session_id):
            raise ConfigError(f"A session id is letters, digits, '-' or '_', got {self.session_id!r}.")
        self.folder = self.results_dir / SESSIONS / self.session_id

    def resolve(self, name: str) -> Path:
        """``name`` inside this session's folder (the folder is created); escapes are refused."""
        name = (name or "").strip()
        if not name:
            raise ConfigError("Give a file name, such as run.nc.")
        target = (self.folder / name).resolve()
        if self.folder not in target.parents:
            raise ConfigError(f"{name!r} is outside this session's folder; give a file name such as run.nc.")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def display(self, path: str | os.PathLike) -> str:
        """How a page names ``path``: relative to the session folder (or ``shared/…`` for the operator's)."""
        p = Path(path).resolve()
        if p == self.folder or self.folder in p.parents:
            return p.relative_to(self.folder).as_posix()
        if self.results_dir in p.parents:
            return "shared/" + p.relative_to(self.results_dir).as_posix()
        return p.name

    def records(self) -> dict[str, Path]:
        """Records this session may open: its own (by name) and the operator's (``shared/…``), sorted."""
        found: dict[str, Path] = {}
        for base, own in ((self.folder, True), (self.results_dir, False)):
            if not base.is_dir():
                continue
            for p in sorted(base.rglob("*")):
                if p.suffix not in RECORD_SUFFIXES or any(part.endswith(".zarr") for part in p.relative_to(base).parts[:-1]):
                    continue
                rel = p.relative_to(base)
                if not own and rel.parts and rel.parts[0] == SESSIONS:
                    continue  # other sessions' folders are not listed (nor openable)
                found[self.display(p)] = p
        return found

    def opened(self, label: str) -> Path:
        """The path of a listed record by its label (the only way a visitor names a file to open)."""
        records = self.records()
        if label not in records:
            raise ConfigError(f"No record {label!r} in this session's folder or the shared results; "
                              f"save one in this session first.")
        return records[label]

    def saved(self, path: str | os.PathLike) -> str:
        """After a save: fix the modes (see :func:`readable_by_group`); return the name to show."""
        readable_by_group(path)
        return self.display(path)


_ABS_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?(?:/[^\s/'\"():,;]+)+/?")


def public_message(exc: BaseException | str, *known: str | os.PathLike) -> str:
    """One line for a page: the workbench's own message (it names the fix), else ``Type: message``,
    with absolute paths reduced to their last component.

    >>> public_message(FileNotFoundError("No such file: '/srv/app/results/sessions/x/a.nc'"))
    "FileNotFoundError: No such file: 'a.nc'"
    """
    if isinstance(exc, str):
        text = exc
    else:  # the shared error path; it answers None for what is not a user error (a bug): then its type and text
        text = errors.explain(exc) or f"{type(exc).__name__}: {exc}"
    for root in known:
        text = text.replace(str(root), "…")
    text = _ABS_PATH.sub(lambda m: Path(m.group(0).rstrip("/")).name or "/", text)
    first = text.strip().splitlines()[0] if text.strip() else "Unknown error"
    return first[:500]
