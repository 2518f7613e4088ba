"""What a run writes and reads back: its record (a labelled ``xarray.Dataset``) and its checkpoints.

:class:`RunFiles` is mixed into :class:`workbench.run.Run`; it only uses the run's public surface
(``history``, ``config()``, ``state_dict()`` through :mod:`workbench.checkpoint`, ``global_step``), so the
stage module stays about training. ``publish(path)`` makes the run write its history beside the record
path while it trains, for a follower in another process (:mod:`workbench.live`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn
from xarray import Dataset as xr_Dataset

from . import fsdp
from .data.base import Dataset
from .record import annotate, encode_attrs, save as save_record_file

if TYPE_CHECKING:
    from .run import Run


class RunFiles:
    """Records and checkpoints of a run (see :mod:`workbench.record`, :mod:`workbench.checkpoint`)."""

    def describe_model(self) -> dict:
        origin = dict(getattr(self.model, "workbench_origin", {}) or {})
        n_params = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {**origin, "class": fsdp.class_name(self.model), "parameters": n_params, "trainable": n_train}

    def record_attrs(self) -> dict:
        """The attributes the record carries: ids, lineage, stage, config, model, data, seed, status, step."""
        return {"run_id": self.run_id, "parent": self.parent, "stage": type(self).__name__, "label": self.label,
                "config": self.config(), "model": self.describe_model(), "data": self.data.describe(),
                "seed": self.seed, "status": self.status, "global_step": self.global_step}

    @property
    def record(self) -> xr_Dataset:
        """The run's labelled ``xarray.Dataset`` with its config, model, data and lineage attached."""
        return annotate(self.history.to_dataset(), **self.record_attrs())

    def save_record(self, path) -> str:
        """Write the record atomically (``.nc`` or ``.zarr``) and return the path.

        If this run publishes to the same path (:meth:`publish`) and its last ``run()`` has ended, the live
        journal is removed: the record now holds everything.
        """
        saved = save_record_file(self.record, path)
        publisher = getattr(self, "publisher", None)
        if publisher is not None and publisher.ended and publisher.record_path.resolve() == saved.resolve():
            self.callbacks.remove(publisher)
            publisher.retire()
            self.publisher = None
        return str(saved)

    def publish(self, path, every: float = 1.0):
        """Publish this run's history beside the record ``path`` while it trains (``path + ".live"``).

        Another process follows it with ``open_record(path, follow=True)`` (or the dashboard's Records tab).
        A publish happens at a step boundary at most every ``every`` seconds, and when a ``run()`` ends (with
        its status); ``save_record(path)`` afterwards removes the journal. Returns the
        :class:`~workbench.live.Publisher`. The CLI does this for ``--out`` (``--publish-every``).
        """
        from .live import Publisher

        attrs = {k: v for k, v in self.record_attrs().items() if k not in ("status", "global_step")}
        old = getattr(self, "publisher", None)
        if old is not None:
            self.callbacks.remove(old)
            old.retire()
        self.publisher = Publisher(path, self.history, attrs=encode_attrs(attrs), every=every)
        self.add_callback("after_step", self.publisher.after_step, name="live-publish", order=1000)
        self.add_callback("after_run", self.publisher.after_run, name="live-publish-end", order=1000)
        return self.publisher

    def save_checkpoint(self, path) -> str:
        """Save everything needed to resume bit-identically (see :mod:`workbench.checkpoint`)."""
        from .checkpoint import save_checkpoint

        return save_checkpoint(self, path)

    def load_checkpoint(self, path, allow_data_change: bool = False) -> "Run":
        """Restore this run from ``path`` (same model architecture, same data unless ``allow_data_change``); all or nothing."""
        from .checkpoint import load_checkpoint

        load_checkpoint(self, path, allow_data_change=allow_data_change)
        return self

    @classmethod
    def resume(cls, path, model: nn.Module | str | None = None, data: Dataset | str | None = None,
               allow_data_change: bool = False, **params) -> "Run":
        """A run rebuilt from a checkpoint; model and data are rebuilt from their descriptions when not given.

        Refuses data that changed since the checkpoint was saved unless ``allow_data_change=True``.
        """
        from .checkpoint import resume

        return resume(cls, path, model=model, data=data, allow_data_change=allow_data_change, **params)
