"""The view layer: Panel views over workbench core objects (depends on workbench, never the reverse).

>>> import widgets                                   # doctest: +SKIP
>>> widgets.view(run)        # the run's panel        # doctest: +SKIP
>>> widgets.ipywidget(run)   # the same, as an ipywidget  # doctest: +SKIP
"""

from .registry import ipywidget, register_view, view

__all__ = ["view", "ipywidget", "register_view"]
