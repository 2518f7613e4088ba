"""User-facing errors.

Every error a researcher can trigger with bad input is one of these: the message says what was wrong
and how to fix it. They subclass the builtin a caller would expect (``ValueError``, ``FileNotFoundError``
…) so ``except ValueError`` still works.
"""

from __future__ import annotations

import contextlib
import difflib


class WorkbenchError(Exception):
    """Base class of all errors the workbench raises on purpose."""


class ConfigError(WorkbenchError, ValueError):
    """A parameter or argument has a value the workbench cannot use."""


class NotFoundError(WorkbenchError, KeyError):
    """A named thing (preset, dataset, method, file) does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class MissingPathError(WorkbenchError, FileNotFoundError):
    """A path given by the user does not exist."""


class CorruptFileError(WorkbenchError, OSError):
    """A record or checkpoint file is truncated, of the wrong kind, or from another model."""


class SaveError(WorkbenchError, OSError):
    """A save failed for a reason outside the workbench (disk full, read-only, permissions, size limit).

    The message names the problem and the target; ``errno`` is the operating system's code.
    """

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DivergedError(WorkbenchError, FloatingPointError):
    """The loss or gradient became NaN/inf; the weights were left at their last finite values."""


class DeviceError(WorkbenchError, RuntimeError):
    """A device was requested that this machine does not have."""


def unknown_name(kind: str, name: object, known: list[str], hint: str = "") -> NotFoundError:
    """Build the error for an unknown registry name, with close matches and the full list."""
    close = difflib.get_close_matches(str(name), known, n=3)
    msg = f"Unknown {kind} {name!r}."
    if close:
        msg += f" Did you mean {', '.join(map(repr, close))}?"
    msg += f" Known {kind}s: {', '.join(known) if known else '(none)'}."
    if hint:
        msg += " " + hint
    return NotFoundError(msg)


def _param_error(exc: BaseException) -> bool:
    """True for the ValueError/TypeError ``param`` raises when a declared parameter gets a bad value."""
    if not isinstance(exc, (ValueError, TypeError)) or isinstance(exc, WorkbenchError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return module.startswith("param.") or module == "param"


def explain(exc: BaseException) -> str | None:
    """One line for a person, or None when ``exc`` is a bug (then show the traceback).

    The one error path shared by the CLI, the API and the dashboard: workbench errors give their
    message; a declared parameter's bad value (``param`` raises ``ValueError``) gives param's message,
    which names the parameter and its allowed values; an ``OSError`` from the operating system gives
    its reason and path; Ctrl-C says the run was interrupted.

    >>> explain(ConfigError("lr must be > 0, got -1. Pass a positive lr."))
    'lr must be > 0, got -1. Pass a positive lr.'
    >>> explain(KeyError("x")) is None
    True
    """
    if isinstance(exc, WorkbenchError):
        return " ".join(str(exc).split())
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)."
    if _param_error(exc):
        msg = " ".join(str(exc).split())
        return msg if msg.endswith(".") else msg + "."
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        where = f" ({exc.filename!r})" if exc.filename else ""
        return f"{exc.strerror}{where}: check the path, its permissions and the free space, then try again."
    return None


@contextlib.contextmanager
def user_errors():
    """Turn a declared parameter's bad value into a :class:`ConfigError` (same message), so callers
    that catch ``WorkbenchError`` see every user mistake; other exceptions pass through unchanged.

    >>> import param
    >>> class P(param.Parameterized):
    ...     n = param.Integer(default=1, bounds=(1, None))
    >>> try:
    ...     with user_errors():
    ...         P(n=0)
    ... except ConfigError as err:
    ...     print(type(err).__name__)
    ConfigError
    """
    try:
        yield
    except (ValueError, TypeError) as exc:
        if not _param_error(exc):
            raise
        raise ConfigError(explain(exc)) from None
