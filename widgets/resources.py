"""Offline notebook resources for the views: BokehJS/Panel JS inlined and published once per kernel.

JupyterLab without internet cannot fetch BokehJS or Panel's stylesheets from their CDNs; this module makes
every view render from what the kernel sends (see each function's docstring for the mechanism). Importing
it changes nothing: :func:`prepare_notebook` is the one explicit call (made by ``widgets/__init__.py``
before any view module loads hvplot); outside a kernel it does nothing, so served apps are untouched.
"""

from __future__ import annotations

import os
import weakref

import panel as pn


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython

        return getattr(get_ipython(), "kernel", None) is not None
    except ImportError:
        return False


def offline_notebook_resources() -> None:
    """Make Panel/HoloViews notebook output render without internet (done once, when ``widgets`` loads in a kernel).

    By default the notebook loaders fetch BokehJS and Panel's JS from cdn.bokeh.org / cdn.holoviz.org,
    and Panel 1.9.4 fetches ``es-module-shims`` from the CDN even when inlining; offline either failure
    stops BokehJS from initializing and no view renders in JupyterLab. Here resources are inlined from
    the kernel (Panel's and HoloViews' — hvplot runs ``hv.extension`` on import), and the shim, which only
    Panel's ESM components (``JSComponent``, ``AnyWidgetComponent``) need, is left out of the notebook
    bundle; the workbench views do not use them. Served apps are untouched (their server ships
    everything). ``WORKBENCH_CDN_RESOURCES=1`` keeps the libraries' defaults.
    """
    if not _in_kernel() or os.environ.get("WORKBENCH_CDN_RESOURCES") == "1":
        return
    from holoviews.ipython import notebook_extension
    from panel.models.esm import ReactiveESM

    ReactiveESM.__javascript_raw__ = []
    pn.config.inline = True
    notebook_extension.inline = True


_BOKEHJS_PUBLISHED = False  # the full BokehJS + Panel bundle was sent to this kernel's notebook


def publish_bokehjs() -> None:
    """Send BokehJS and Panel's JS to the notebook page, once per kernel (before the first view is shown).

    ``pn.extension``/``hv.extension`` leave BokehJS out of their output when they think it is already on
    the page: when HoloViews' extension ran before, or when any pyviz extension object was created
    earlier *in the same cell*. ``hv.renderer("bokeh")`` (run on import by the view modules) creates one
    without any notebook output, so when a cell displays the first run, every later load in that cell
    went out as a "reloading" stub without BokehJS, and the page logged "BokehJS failed to load within
    specified timeout". Panel's ``load_notebook(reloading=False)`` always sends the whole bundle (inline,
    see :func:`offline_notebook_resources`); the stubs published after it wait for it and then run.
    """
    global _BOKEHJS_PUBLISHED
    if _BOKEHJS_PUBLISHED or not _in_kernel():
        return
    from panel.io.notebook import load_notebook

    load_notebook(pn.config.inline, reloading=False)
    _BOKEHJS_PUBLISHED = True


def load_notebook_extension() -> None:
    """``pn.extension()`` unless Panel's notebook extension is loaded (displaying a view calls this first)."""
    publish_bokehjs()
    if not pn.extension._loaded:
        pn.extension(inline=pn.config.inline)


def prepare_notebook() -> None:
    """In a kernel: inline Panel/HoloViews resources and publish BokehJS once (no-op elsewhere).

    Why this is needed, and why at this moment (before the view modules import hvplot/HoloViews): see
    :func:`offline_notebook_resources` (the one change to Panel internals: its ESM shim is dropped from the
    notebook bundle, which would otherwise request a CDN file and stop BokehJS offline) and
    :func:`publish_bokehjs` (BokehJS must be on the page before the extensions' "reloading" stubs).
    """
    offline_notebook_resources()
    publish_bokehjs()


_INLINE_SHEETS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # Document -> {CDN url: InlineStyleSheet}


class _InlineStylesheets:
    """Markup pane mixin: stylesheets re-sent on updates stay where the page can load them.

    Served: a model that left the page is rendered with the session's document (:func:`_session_document`).

    Panel inlines its CDN stylesheets (``markdown.css``, ``alerts.css``, themes…) when a view is first
    rendered in a notebook, but a markup pane whose ``object`` changes re-sends its stylesheets as CDN
    ``ImportedStyleSheet``\ s; offline the browser fails to fetch them and the pane loses its styling
    (the monitor's message box shows as plain text). Each CDN sheet is read from Panel's own ``dist``
    folder, once per document. Never picked by ``pn.panel``'s automatic pane-type detection.
    """

    priority = 0

    @classmethod
    def applies(cls, obj) -> float | bool:  # 0: valid for this pane but never chosen automatically (as pn.pane.Alert)
        return 0 if pn.pane.Markdown.applies(obj) else False

    def _get_properties(self, doc):
        if doc is None:
            doc = _session_document()
        props = super()._get_properties(doc)
        if "stylesheets" in props and pn.config.inline:
            from bokeh.models import ImportedStyleSheet
            from panel.io.notebook import replace_inline_css
            from panel.io.resources import CDN_DIST

            cache = _INLINE_SHEETS.setdefault(doc, {}) if doc is not None else {}  # a model lives in one document
            sheets = []
            for sheet in props["stylesheets"]:
                if isinstance(sheet, ImportedStyleSheet) and sheet.url.startswith(CDN_DIST):
                    sheet = cache.setdefault(sheet.url, replace_inline_css(sheet))
                sheets.append(sheet)
            props["stylesheets"] = sheets
        return props


def _session_document():
    """The served session's document while one of its callbacks runs (None in a notebook or a script).

    A markup pane re-renders its properties for each model it has; a model that left the page (a tab
    rebuilt, a plot swapped in for its placeholder) has no document, and Panel then re-points the
    stylesheets at the CDN — objects it *shares* with the live models of every session, so the page
    fetched ``cdn.holoviz.org/…/markdown.css`` (offline: failed requests in the browser console).
    Rendering with the session's document keeps them on this server's ``static/`` path.
    """
    doc = pn.state.curdoc
    return doc if doc is not None and doc.session_context is not None else None


class Markdown(_InlineStylesheets, pn.pane.Markdown):
    """``pn.pane.Markdown`` that keeps its styling offline when its text changes (see ``_InlineStylesheets``)."""


class Alert(_InlineStylesheets, pn.pane.Alert):
    """``pn.pane.Alert`` that keeps its styling offline when its text changes (see ``_InlineStylesheets``)."""

