"""Which view shows which core object: one validated registry, keyed by core class.

``register_view(CoreClass)(factory)`` maps a core class to ``factory(obj, **kw) -> Viewer``; ``view(obj)``
finds the most specific registered class along ``type(obj).__mro__``, so a subclass of ``Run`` (a
fine-tuning or unlearning stage) gets the ``Run`` monitor unless it registers its own, and any
``Probe`` gets the by-shape probe view. Registration is validated as the core's
:class:`workbench.registry.Registry` validates names: a class and a callable, no silent replacement.
Every view module registers its views when ``widgets`` is imported (``widgets/__init__.py`` imports
them), so there is no separate list of modules to keep.

>>> class Thing: pass
>>> @register_view(Thing)
... def thing_view(obj, **kw): return f"view of {type(obj).__name__}"
>>> view(Thing())
'view of Thing'
>>> register_view(Thing)(lambda obj, **kw: "another")
Traceback (most recent call last):
...
workbench.errors.ConfigError: A view for Thing is already registered (thing_view); pass replace=True to override it.
>>> VIEWS.unregister(Thing)
"""

from __future__ import annotations

from typing import Callable

from workbench.errors import ConfigError


class ViewRegistry:
    """Core class → view factory, looked up along the MRO."""

    def __init__(self):
        self._views: dict[type, Callable] = {}

    def register(self, core_cls: type, factory: Callable | None = None, *, replace: bool = False):
        """Register ``factory`` for ``core_cls``; used bare or as a decorator (``@VIEWS.register(Run)``)."""
        if not isinstance(core_cls, type):
            raise ConfigError(f"register_view needs a class (the core type to show), got {core_cls!r}.")

        def add(f):
            if not callable(f):
                raise ConfigError(f"A view for {core_cls.__name__} must be callable as factory(obj, **kw), got {f!r}.")
            old = self._views.get(core_cls)
            if old is not None and old is not f and not replace:
                raise ConfigError(f"A view for {core_cls.__name__} is already registered "
                                  f"({getattr(old, '__name__', old)}); pass replace=True to override it.")
            self._views[core_cls] = f
            return f

        return add if factory is None else add(factory)

    def unregister(self, core_cls: type) -> None:
        self._views.pop(core_cls, None)

    def factory(self, obj) -> Callable:
        """The factory for ``obj``: the most specific registered class of its MRO."""
        for cls in type(obj).__mro__:
            if cls in self._views:
                return self._views[cls]
        known = ", ".join(sorted(c.__name__ for c in self._views))
        raise ConfigError(f"No view is registered for {type(obj).__name__}; views exist for: {known}. "
                          f"Register one with widgets.register_view({type(obj).__name__})(factory).")

    def classes(self) -> list[type]:
        return list(self._views)


VIEWS = ViewRegistry()


def register_view(core_cls: type, *, replace: bool = False):
    """Decorator: ``@register_view(Run)`` on a view class or factory ``factory(obj, **kw)``."""
    return VIEWS.register(core_cls, replace=replace)


def view_factory(obj) -> Callable:
    return VIEWS.factory(obj)


def view(obj, **kwargs):
    """The panel of ``obj`` (a ``panel.viewable.Viewer``)."""
    return VIEWS.factory(obj)(obj, **kwargs)


def ipywidget(obj, **kwargs):
    """The view of ``obj`` as a real ipywidget (``pn.ipywidget``), for ipywidgets layouts and other frontends."""
    import panel as pn

    return pn.ipywidget(view(obj, **kwargs))
