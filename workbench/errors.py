"""User-facing errors.

Every error a researcher can trigger with bad input is one of these: the message says what was wrong
and how to fix it. They subclass the builtin a caller would expect (``ValueError``, ``FileNotFoundError``
…) so ``except ValueError`` still works.
"""

from __future__ import annotations

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
