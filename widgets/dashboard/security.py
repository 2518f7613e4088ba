"""Server hooks of the dashboard: a Host allowlist (DNS rebinding) and "this session's page is gone".

**Host as well as Origin.** Bokeh checks a websocket's ``Origin`` against ``websocket_origin``, but
Tornado (≥ 6.5) skips that check when ``Origin`` and ``Host`` name the same site — which is exactly a
DNS-rebinding request: a page on ``evil.example`` whose name now resolves to 127.0.0.1 sends
``Host = Origin = evil.example:PORT``. :class:`HostCheckedWSHandler` and :class:`HostCheckedDocHandler`
refuse (HTTP 403) any page or websocket request whose ``Host`` is not in the server's allowlist (the same
``websocket_origin`` list: the served addresses), before a session is built.

**A closed page releases its training at once.** Bokeh destroys a session only after it has been unused
for a while (about 15–30 s). :func:`on_connection_lost` registers a function that runs as soon as the
last websocket of a session's document closes — the dashboard stops that session's trainings then.

:func:`install` puts both handlers into Panel/Bokeh's per-app URL patterns; call it before the server is
built (:func:`widgets.serve.serve` does). It changes nothing for a server whose requests name an allowed
Host.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Callable

from bokeh.server.urls import per_app_patterns
from bokeh.server.util import check_allowlist
from panel.io.server import DocHandler, WSHandler

log = logging.getLogger("workbench.dashboard")

_HOOKS: "weakref.WeakKeyDictionary[object, list[Callable[[], None]]]" = weakref.WeakKeyDictionary()
_HOOKS_LOCK = threading.Lock()


def host_allowed(handler) -> bool:
    """Is the request's ``Host`` one of the addresses this server was told it serves?"""
    allowed = getattr(handler.application, "websocket_origins", None)
    if not allowed:
        return True
    host = (handler.request.host or "").lower()
    return check_allowlist(host, allowed)


def _refuse(handler) -> None:
    log.warning("Refused a request for Host %r (allowed: %s); DNS rebinding or a wrong address.",
                handler.request.host, sorted(handler.application.websocket_origins))
    handler.set_status(403)
    handler.finish("This server does not serve that host name. Open it by the address it was started with.")


class HostCheckedDocHandler(DocHandler):
    """Panel's page handler, refusing a ``Host`` outside the allowlist before any session is built."""

    async def prepare(self):
        if not host_allowed(self):
            _refuse(self)
            return
        await super().prepare()


class HostCheckedWSHandler(WSHandler):
    """Panel's websocket handler with the Host check, and :func:`on_connection_lost` hooks on close."""

    async def prepare(self):
        if not host_allowed(self):
            _refuse(self)
            return
        await super().prepare()

    def on_close(self) -> None:
        session = self.connection.session if self.connection is not None else None
        super().on_close()
        if session is not None and session.connection_count == 0:
            _fire(session.document)


def on_connection_lost(document, fn: Callable[[], None]) -> None:
    """Call ``fn()`` (in the server's thread) when the last websocket of ``document``'s session closes."""
    with _HOOKS_LOCK:
        _HOOKS.setdefault(document, []).append(fn)


def _fire(document) -> None:
    with _HOOKS_LOCK:
        hooks = _HOOKS.pop(document, [])
    for fn in hooks:
        try:
            fn()
        except Exception:  # noqa: BLE001 - a failing hook must not break the server's close handling
            log.exception("A session-close hook failed")


def install() -> None:
    """Use the checked handlers for every app served from now on in this process (idempotent)."""
    replacements = {WSHandler: HostCheckedWSHandler, DocHandler: HostCheckedDocHandler}
    for i, entry in enumerate(per_app_patterns):
        pattern, handler = entry[0], entry[1]
        if handler in replacements:
            per_app_patterns[i] = (pattern, replacements[handler], *entry[2:])
