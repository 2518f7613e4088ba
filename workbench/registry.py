"""A tiny, validated name → object registry used for every pluggable kind.

Presets, datasets, optimizers, schedules, init recipes, LoRA inits, unlearning methods and probes each
live in one ``Registry``; a method registers itself in its own file with the ``register`` decorator.

>>> r = Registry("colour")
>>> @r.register("red", help="the colour red")
... def red(): return "#f00"
>>> r.get("red")()
'#f00'
>>> r.names()
['red']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .errors import ConfigError, unknown_name


@dataclass
class Entry:
    """One registered object with its name, one-line help and free-form metadata."""

    name: str
    obj: Any
    help: str = ""
    meta: dict = field(default_factory=dict)


class Registry:
    """Named objects of one kind (``kind`` appears in error messages)."""

    def __init__(self, kind: str, hint: str = ""):
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, obj: Any = None, *, help: str = "", replace: bool = False, **meta):
        """Register ``obj`` under ``name``; used bare or as a decorator."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise ConfigError(f"A {self.kind} name must be a non-empty string without spaces around it, got {name!r}.")

        def add(o):
            if name in self._entries and not replace:
                raise ConfigError(f"A {self.kind} named {name!r} is already registered; pass replace=True to override it.")
            doc = help or ((getattr(o, "__doc__", None) or "").strip().splitlines() or [""])[0]
            self._entries[name] = Entry(name, o, doc, dict(meta))
            return o

        return add if obj is None else add(obj)

    def get(self, name: str) -> Any:
        """The object registered as ``name``; a clear error listing the known names otherwise."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise unknown_name(self.kind, name, self.names(), self.hint) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def table(self) -> list[dict]:
        """Rows of name, help and metadata: what a panel lists."""
        return [{"name": e.name, "help": e.help, **e.meta} for e in self._entries.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
