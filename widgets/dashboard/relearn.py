"""The Unlearning tab's Relearn button: attack a copy of the unlearned model, live.

A relearning attack fine-tunes a copy of the unlearned model on a few forget facts; what comes back
within a handful of steps was hidden, not removed (see :mod:`workbench.unlearn.relearn`). Here the
attack is a stage of its own (:func:`widgets.dashboard.labs.relearn`: a ``Relearn`` run with the same
``UnlearnProbe``), shown with ``widgets.view`` like every stage and capped like every training: press
Relearn, then Start it and watch the forget probability recover.
"""

from __future__ import annotations

import logging
import os

import panel as pn

from workbench.errors import ConfigError

from widgets.resources import Alert, Markdown

from .files import public_message
from .labs import relearn

log = logging.getLogger("workbench.dashboard")


class RelearnPanel(pn.viewable.Viewer):
    """A Relearn button; each press adds a fresh attack stage on a copy of the current unlearned model."""

    def __init__(self, session, tab, unlearned, **params):
        super().__init__(**params)
        self.session, self.tab, self.unlearned = session, tab, unlearned
        self.button = pn.widgets.Button(label="Relearn", color="warning",
                                        description="Build an attack on a copy of the unlearned model (then Start it)")
        self.button.on_click(self._on_relearn)
        self.message = Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self.attacks = pn.Column(sizing_mode="stretch_width")
        self._layout = pn.Column(
            Markdown("**Relearning attack** · fine-tune a copy of the unlearned model on 4 forget facts for 10 steps "
                     "and watch the forget probability: what returns was hidden, not removed.",
                     sizing_mode="stretch_width"),
            self.button, self.message, self.attacks, sizing_mode="stretch_width")

    def __panel__(self):
        return self._layout

    def _on_relearn(self, _event=None) -> None:
        self.message.visible = False
        try:
            if self.unlearned.running:
                raise ConfigError("The unlearning run is training; Stop it first, then Relearn attacks its model.")
            stage = relearn(self.session.config, self.unlearned)
            from widgets.app import show

            self.session.slots.guard(stage)
            view = show(stage, self.session.files, self.session.config)
        except Exception as exc:  # noqa: BLE001 - one line for the visitor; details in the log
            log.error("Relearn failed", exc_info=exc)
            self.message.object = public_message(exc, self.session.files.results_dir, os.getcwd())
            self.message.visible = True
            return
        n = sum(1 for k in self.tab.stages if k.startswith("relearn")) + 1
        self.tab.stages[f"relearn {n}"] = stage
        self.tab.views.append(view)
        self.attacks[:] = [Markdown(f"**Attack {n}** on the model after {self.unlearned.global_step} unlearning "
                                    f"steps", sizing_mode="stretch_width"), view]
