"""Atomic saves: the one implementation of "write beside the target, fsync, rename, clean up".

Every file and folder the workbench writes (records ``.nc``/``.zarr``, checkpoints, model folders)
goes through here, so one set of guarantees holds for all of them (``docs/guarantees.md``):

* **All or nothing.** The new content is written to a temporary name beside the target
  (``.NAME.PID.RANDOM.tmp``), flushed to disk (``fsync``) and renamed over the target. A kill -9 at any
  moment leaves either the previous target or the new one under the real name, never a mix.
* **Folders too.** A folder is swapped in with one atomic ``renameat2(RENAME_EXCHANGE)`` where the
  filesystem supports it; elsewhere the old folder is renamed aside (``.NAME.PID.RANDOM.old``), the new
  one renamed in, and the old one deleted — and :func:`recover` (called by the next save and by every
  load) puts an orphaned aside folder back if a crash fell between the two renames.
* **Never deletes what it does not own.** An existing target is replaced only if ``owns(target)``
  says it is the same kind of thing (a zarr store, a saved model…); anything else is refused.
* **Clear errors, process alive.** A full disk, a read-only folder, a file-size limit or a missing
  permission raise :class:`~workbench.errors.SaveError` naming the problem and the target (never only a
  temporary name); the previous target is untouched and the temporary is removed.
* **No litter.** Temporaries left by crashed saves (their process is gone) are removed by the next save
  of the same target. New files get the usual permissions (``0666`` less the umask), not ``0600``.

>>> import os, tempfile
>>> target = os.path.join(tempfile.mkdtemp(), "notes.txt")
>>> _ = write_bytes(target, b"first", what="notes")
>>> _ = write_file(target, lambda f: f.write(b"second"), what="notes")
>>> open(target, "rb").read(), sorted(os.listdir(os.path.dirname(target)))
(b'second', ['notes.txt'])
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Callable

from .errors import ConfigError, MissingPathError, SaveError

STALE_UNKNOWN_AGE_S = 3600.0  # a temporary without a readable pid is stale after this long

_PROBLEMS = {
    errno.ENOSPC: ("the disk is full", "free some space or save to another disk"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or save to another disk"),
    errno.EFBIG: ("the file is larger than this process may write (file-size limit, `ulimit -f`)",
                  "raise the limit or save to another place"),
    errno.EROFS: ("the file system is read-only", "save to a writable folder"),
    errno.EACCES: ("permission denied", "save to a folder you can write to, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "save to a folder you can write to, or fix its permissions"),
}


# ----------------------------------------------------------------------------- checks
def check_target(path, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Validate a save path before any work: non-empty, known suffix, existing parent folder.

    Raises ``ConfigError`` / ``MissingPathError`` whose message names the fix.
    """
    if path is None or str(path).strip() == "":
        raise ConfigError(f"The {what} path is empty: pass a file name such as 'runs/run.nc'.")
    p = Path(os.path.expanduser(str(path)))
    if p.name in ("", ".", "..") or str(path).endswith(("/", os.sep)):
        raise ConfigError(f"{str(path)!r} names a folder, not a {what}: pass a file name inside it, e.g. "
                          f"{str(p / ('run' + (suffixes[0] if suffixes else '')))!r}.")
    if suffixes and p.suffix not in suffixes:
        raise ConfigError(f"Cannot save a {what} as {str(p)!r}: the extension must be one of {', '.join(suffixes)} "
                          f"(got {p.suffix or 'none'!r}). Rename the path, e.g. {str(p.with_suffix(suffixes[0]))!r}.")
    parent = p.parent
    if not parent.exists():
        raise MissingPathError(f"Cannot save the {what} to {str(p)!r}: the folder {str(parent)!r} does not exist. "
                               "Create it first (mkdir -p) or pick another path.")
    if not parent.is_dir():
        raise ConfigError(f"Cannot save the {what} to {str(p)!r}: {str(parent)!r} is a file, not a folder.")
    return p


def check_writable(path, what: str) -> None:
    """Fail now (not after training) if a file cannot be created beside ``path``."""
    p = Path(path)
    probe = p.parent / f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        os.close(fd)
    except OSError as exc:
        raise _save_error(exc, p, what, before=True) from None
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def _save_error(exc: OSError, target: Path, what: str, before: bool = False) -> SaveError:
    problem, fix = _PROBLEMS.get(exc.errno, (exc.strerror or str(exc), "check the path and try again"))
    if before:
        return SaveError(f"Cannot write the {what} to {str(target)!r}: {problem}. Nothing was started; {fix}.",
                         errno=exc.errno)
    return SaveError(f"Could not save the {what} to {str(target)!r}: {problem}. The previous {what} (if any) "
                     f"is unchanged; {fix}.", errno=exc.errno)


_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]|os error (\d+)|errno = (\d+)")


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``, or None. Libraries wrap them: chained exceptions are followed, and
    an errno quoted in the text (HDF5's ``errno = 28``, Rust's ``os error 28``) is recognised."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _PROBLEMS:
            return exc
        match = _ERRNO_IN_TEXT.search(str(exc))
        if match and int(next(g for g in match.groups() if g)) in _PROBLEMS:
            code = int(next(g for g in match.groups() if g))
            return OSError(code, os.strerror(code))
        exc = exc.__cause__ or exc.__context__
    return None


# ----------------------------------------------------------------------------- stale temporaries
def _temp_name(target: Path, ending: str) -> Path:
    return target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.{ending}"


def _siblings(target: Path, ending: str) -> list[Path]:
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[0-9a-f]+\.{ending}$")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    return [target.parent / n for n in names if pattern.match(n)]


def _owner_alive(path: Path) -> bool:
    """True if the process that created this temporary may still be writing it."""
    try:
        pid = int(path.name.rsplit(".", 3)[-3])
    except (ValueError, IndexError):
        return time.time() - path.lstat().st_mtime < STALE_UNKNOWN_AGE_S
    if pid == os.getpid():
        return True  # ours: another thread may be saving the same target right now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path, attempts: int = 400) -> None:
    """Delete a temporary file or folder. A writer's background threads (zarr writes chunks
    asynchronously) may still add files just after a failure, so a folder is retried briefly."""
    for _ in range(attempts):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
        except OSError:
            pass
        if not os.path.lexists(path):
            return
        time.sleep(0.05)


def recover(path) -> None:
    """Repair what a crashed save of ``path`` left behind; cheap when there is nothing to do.

    If ``path`` is missing but a crashed folder swap left the old folder aside, rename it back. Remove
    temporaries and aside copies whose writing process is gone.
    """
    target = Path(os.path.expanduser(str(path)))
    if not target.parent.is_dir():
        return
    asides = [p for p in _siblings(target, "old") if not _owner_alive(p)]
    if asides and not os.path.lexists(target):
        newest = max(asides, key=lambda p: p.lstat().st_mtime)
        try:
            os.rename(newest, target)
            asides.remove(newest)
        except OSError:
            pass
    for stale in asides + [p for p in _siblings(target, "tmp") if not _owner_alive(p)]:
        _remove(stale)


# ----------------------------------------------------------------------------- fsync helpers
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


# ----------------------------------------------------------------------------- files
def _abandon(tmp: Path, exc: BaseException, target: Path, what: str) -> None:
    """A save failed: remove its temporary, and turn an OS error (disk full, read-only …) into a SaveError
    naming the real target. Otherwise the caller re-raises ``exc`` as it is."""
    _remove(tmp)
    cause = _os_error_in(exc)
    if cause is not None:
        raise _save_error(cause, target, what) from None


def write_file(path, write: Callable, what: str = "file", owns: Callable[[Path], bool] | None = None) -> Path:
    """Atomically replace the file ``path`` with what ``write(f)`` writes to a binary file object.

    ``owns(path)`` (optional) must return True for an existing target to be replaced; a folder is
    never replaced by a file.
    """
    target = check_target(path, what)
    recover(target)
    if target.is_dir():
        raise ConfigError(f"Cannot save the {what} to {str(target)!r}: a folder of that name exists. "
                          "Pick another file name (nothing was changed).")
    if target.exists() and owns is not None and not owns(target):
        raise ConfigError(f"Refusing to overwrite {str(target)!r}: it is not a workbench {what}. Pick another name or "
                          "move that file away (nothing was changed).")
    tmp = _temp_name(target, "tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as exc:
        _abandon(tmp, exc, target, what)
        raise
    return target


def write_bytes(path, data, what: str = "file", owns: Callable[[Path], bool] | None = None) -> Path:
    """Atomically replace the file ``path`` with ``data`` (bytes or a memoryview)."""
    return write_file(path, lambda f: f.write(data), what=what, owns=owns)


def append(fd: int, data: bytes, target, what: str = "file", fsync: bool = False) -> None:
    """Append one record ``data`` (ending in a newline) to a file opened with ``O_APPEND``, in one ``write``.

    The append-only counterpart of the saves above (live journals, :mod:`workbench.live`): a reader that
    takes only complete lines sees the record whole or not at all, and a crash can only leave a partial last
    line. An OS error (disk full, file-size limit …) raises :class:`SaveError` naming ``target``; the partial
    record is cut off again, so what was appended before stays readable and later appends stay whole.
    """
    start = os.fstat(fd).st_size
    view = memoryview(data)
    try:
        while view:  # a short write (a size limit, a full disk) is retried: the next write says why it stopped
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except OSError as exc:
        try:
            os.ftruncate(fd, start)  # no partial record left for the next append to run into
        except OSError:
            pass
        cause = _os_error_in(exc) or exc
        problem, fix = _PROBLEMS.get(cause.errno, (cause.strerror or str(cause), "check the path and try again"))
        raise SaveError(f"Could not append to the {what} {str(target)!r}: {problem}. What was written before is "
                        f"intact; {fix}.", errno=cause.errno) from None


# ----------------------------------------------------------------------------- folders
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where the OS or filesystem cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def write_dir(path, write: Callable[[Path], None], what: str, owns: Callable[[Path], bool]) -> Path:
    """Atomically replace the folder ``path`` with the folder ``write(tmp_dir)`` fills.

    An existing ``path`` is replaced only if ``owns(path)`` is True (the same kind of thing, written by
    the workbench); otherwise ``ConfigError`` and nothing changes.
    """
    target = check_target(path, what)
    recover(target)
    if os.path.lexists(target):
        if not target.is_dir() or target.is_symlink():
            raise ConfigError(f"Refusing to overwrite {str(target)!r} with a {what}: it is a file, not a {what}. "
                              "Pick another name or move it away (nothing was changed).")
        if not owns(target):
            raise ConfigError(f"Refusing to overwrite the folder {str(target)!r}: it is not a workbench {what} (or it "
                              "holds files a save would delete). Pick another name or move it away (nothing was changed).")
    tmp = _temp_name(target, "tmp")
    try:
        os.mkdir(tmp, 0o777)
        write(tmp)
        _fsync_tree(tmp)
        if not os.path.lexists(target):
            os.rename(tmp, target)
        elif _exchange(tmp, target):
            pass  # tmp now holds the old folder; removed below
        else:
            aside = _temp_name(target, "old")
            os.rename(target, aside)
            os.rename(tmp, target)
            tmp = aside
        _fsync_dir(target.parent)
    except BaseException as exc:
        _abandon(tmp, exc, target, what)
        raise
    _remove(tmp)
    return target

