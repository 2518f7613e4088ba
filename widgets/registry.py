"""Which view shows which core object.

``register_view(CoreClass)(ViewFactory)`` maps a core class to a factory ``factory(obj, **kw) -> Viewer``.
``view(obj)`` finds the most specific registered class along ``type(obj).__mro__``, so a subclass of
``Run`` (a fine-tuning or unlearning stage) gets the ``Run`` monitor unless it registers its own.
"""

from __future__ import annotations

from typing import Callable

_VIEWS: dict[type, Callable] = {}


def register_view(core_cls: type):
    """Decorator: ``@register_view(Run)`` on a view class or factory."""

    def add(factory):
        _VIEWS[core_cls] = factory
        return factory

    return add


def view_factory(obj) -> Callable:
    _load_builtin_views()
    for cls in type(obj).__mro__:
        if cls in _VIEWS:
            return _VIEWS[cls]
    known = ", ".join(sorted(c.__name__ for c in _VIEWS))
    raise TypeError(f"No view is registered for {type(obj).__name__}; views exist for: {known}.")


def view(obj, **kwargs):
    """The panel of ``obj`` (a ``panel.viewable.Viewer``)."""
    return view_factory(obj)(obj, **kwargs)


def ipywidget(obj, **kwargs):
    """The view of ``obj`` as a real ipywidget (``pn.ipywidget``), for ipywidgets layouts and other frontends."""
    import panel as pn

    return pn.ipywidget(view(obj, **kwargs))


_LOADED = False


def _load_builtin_views() -> None:
    """Import the modules that register views (each lab adds its module to VIEW_MODULES)."""
    global _LOADED
    if _LOADED:
        return
    import importlib

    for name in VIEW_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside an existing module
                raise
    _LOADED = True


# Modules whose import registers views. Labs append theirs here.
VIEW_MODULES = [
    "widgets.monitor",
    "widgets.record_view",
    "widgets.spectrum",
    "widgets.finetune",
    "widgets.regime",
    "widgets.unlearn",
]
