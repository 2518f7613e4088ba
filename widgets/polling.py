"""Periodic-poll bookkeeping shared by the live views.

A view that streams from a core object's history mixes in :class:`Poller`, sets ``self.period`` (ms)
and defines ``poll()`` (which must never raise: an exception silently kills a periodic callback in a
notebook). ``start_polling``/``stop_polling`` register and remove the callback in the current server
session or notebook kernel.
"""

from __future__ import annotations

import panel as pn


class Poller:
    """Mixin: ``start_polling()`` / ``stop_polling()`` around ``self.poll`` every ``self.period`` ms."""

    period = 400
    _callback = None

    def start_polling(self) -> None:
        """Register the periodic poll (idempotent)."""
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.poll, period=self.period)

    def stop_polling(self) -> None:
        """Remove the periodic poll; the view keeps what it shows."""
        if self._callback is not None:
            try:
                self._callback.stop()
            except Exception:  # already stopped with its session
                pass
            self._callback = None
