"""The view layer: Panel views over workbench core objects (depends on workbench, never the reverse).

>>> import widgets                                   # doctest: +SKIP
>>> widgets.view(run)        # the run's panel        # doctest: +SKIP
>>> widgets.view(probe)      # a probe's live panel   # doctest: +SKIP
>>> widgets.ipywidget(run)   # the same, as an ipywidget  # doctest: +SKIP
"""

from . import resources
from .registry import VIEWS, ipywidget, register_view, view

# In a notebook kernel only (a no-op elsewhere): inline Panel's/HoloViews' resources and publish BokehJS
# once, *before* the view modules below import HoloViews/hvplot, so views render in an offline
# JupyterLab. See resources.prepare_notebook for why each of its two steps is needed.
resources.prepare_notebook()

# Importing the view modules registers their views (each module decorates its views with register_view).
from . import monitor, probe_view, record_view, spectrum, finetune, regime, unlearn, esd  # noqa: E402,F401

__all__ = ["view", "ipywidget", "register_view", "VIEWS"]
