"""Notebook display of core objects without importing any UI library at import time.

Core classes mix in :class:`Displayable`. When IPython displays one, ``_repr_mimebundle_`` imports the
view layer (``widgets``) *then*, builds the registered view and renders it. ``import workbench`` alone
never loads panel, holoviews, bokeh or ipywidgets; without the view layer installed the object shows as
its text ``repr``.
"""

from __future__ import annotations


class Displayable:
    """Mixin: display as the view registered for this class in ``widgets.registry``."""

    def _repr_mimebundle_(self, include=None, exclude=None):
        try:
            import widgets  # the view layer; optional
        except ImportError:
            return {"text/plain": repr(self)}
        return widgets.view(self)._repr_mimebundle_(include, exclude)
