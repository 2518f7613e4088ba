"""Serve a researcher's own experiment: ``workbench serve experiment.py``.

**The convention.** The file defines a function ``experiment()`` (no arguments) that builds and returns
what to show:

* one stage (a :class:`workbench.Run`, ``FineTune``, ``Unlearn``, ``InitLab`` … anything ``widgets.view``
  knows), or
* several: a list/tuple of stages (one tab each, titled by the stage's label), or a dict
  ``{tab title: stage}``.

It is called once per browser session, so each visitor gets their own stages, shown with the same
monitor as every lab (``widgets.view(stage)``) and under the server's cap on running trainings.
Module-level code runs once per server process (put shared, read-only set-up there, e.g. a tokenized
dataset) and again when the file changes on disk.

.. code-block:: python

    # experiment.py
    from workbench import Run, data
    from workbench.spectra import SpectraProbe

    DATA = data.load("stories", n_docs=300)          # once per server process

    def experiment():                                # once per browser session
        run = Run("gpt2-1m", DATA, batch_size=8, max_steps=300, label="mine")
        run.add_probe(SpectraProbe(every=10))
        return run

**When it goes wrong** — the file does not parse, raises while loading, has no ``experiment()``,
``experiment()`` raises or returns something that is not a stage — the session's page shows one line
(the file's name, the line, the exception, what to do), never a traceback or a server path; the server log
keeps the traceback. Only the file named on the command line is ever run; nothing typed in a browser is.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "broken.py"
>>> _ = path.write_text("def experiment(:\\n    pass\\n")
>>> Experiment(path).build()
Traceback (most recent call last):
...
widgets.dashboard.experiment.ExperimentError: broken.py line 1 does not parse (SyntaxError: ...). Fix the file and reload the page.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
import types
from pathlib import Path

from workbench.errors import ConfigError, MissingPathError

from .files import public_message

log = logging.getLogger("workbench.dashboard")

ENTRY = "experiment"


class ExperimentError(ConfigError):
    """The served experiment file could not give stages; the message is safe to show in a page."""


def _line_in(exc: BaseException, path: Path) -> int | None:
    """The last line of ``path`` in the exception's traceback (where the file failed)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    return line


class Experiment:
    """A researcher's experiment file; :meth:`build` gives one session's stages (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise MissingPathError(f"No experiment file at {path}; give the path of a Python file that defines "
                                   f"{ENTRY}() returning a stage.")
        if self.path.suffix != ".py":
            raise ConfigError(f"{self.path.name} is not a Python file; serve a .py file that defines {ENTRY}().")
        self.name = self.path.name
        self._lock = threading.Lock()
        self._module: types.ModuleType | None = None
        self._mtime: int | None = None

    def _fail(self, what: str, exc: BaseException) -> ExperimentError:
        log.error("%s: %s", self.name, what, exc_info=exc)
        line = _line_in(exc, self.path)
        where = f"{self.name} line {line}" if line else self.name
        return ExperimentError(f"{where}: {what} ({public_message(exc, self.path.parent)}). "
                               f"Fix the file and reload the page.")

    def module(self) -> types.ModuleType:
        """The file run as a module (once, and again after the file changes)."""
        with self._lock:
            mtime = self.path.stat().st_mtime_ns
            if self._module is not None and mtime == self._mtime:
                return self._module
            source = self.path.read_text(encoding="utf-8")
            try:
                code = compile(source, str(self.path), "exec")
            except SyntaxError as exc:
                log.error("%s does not parse", self.name, exc_info=exc)
                raise ExperimentError(f"{self.name} line {exc.lineno} does not parse (SyntaxError: {exc.msg}). "
                                      f"Fix the file and reload the page.") from None
            module = types.ModuleType(f"workbench_experiment_{self.path.stem}")
            module.__file__ = str(self.path)
            folder = str(self.path.parent)
            if folder not in sys.path:
                sys.path.append(folder)  # its own helper modules import as they would from a script
            try:
                exec(code, module.__dict__)  # the operator's file, named on the command line: never browser input
            except Exception as exc:  # noqa: BLE001 - reported as one line, traceback in the log
                raise self._fail("raised while loading", exc) from None
            self._module, self._mtime = module, mtime
            return module

    def build(self) -> dict:
        """Call ``experiment()``; return ``{tab title: stage}`` (an :class:`ExperimentError` says what is wrong)."""
        from widgets.registry import view_factory

        module = self.module()
        entry = getattr(module, ENTRY, None)
        if not callable(entry):
            raise ExperimentError(f"{self.name} defines no function {ENTRY}(). Add `def {ENTRY}():` returning a "
                                  f"stage (e.g. a workbench Run), a list of stages or a dict of title → stage.")
        try:
            made = entry()
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"{ENTRY}() raised", exc) from None
        if isinstance(made, dict):
            stages = {str(k): v for k, v in made.items()}
        elif isinstance(made, (list, tuple)):
            stages = {}
            for i, stage in enumerate(made):
                title = getattr(stage, "label", "") or f"{type(stage).__name__} {i + 1}"
                stages[title if title not in stages else f"{title} ({i + 1})"] = stage
        else:
            stages = {getattr(made, "label", "") or type(made).__name__: made}
        if not stages:
            raise ExperimentError(f"{ENTRY}() in {self.name} returned no stages; return at least one.")
        for title, stage in stages.items():
            try:
                view_factory(stage)
            except (TypeError, ConfigError):  # the view registry knows no view for it
                raise ExperimentError(f"{ENTRY}() in {self.name} returned a {type(stage).__name__} ({title!r}), which "
                                      f"is not a stage the dashboard can show; return a workbench stage (Run, "
                                      f"FineTune, Unlearn, InitLab …), a list of them or a dict title → stage.") from None
        return stages
