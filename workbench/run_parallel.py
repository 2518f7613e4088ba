"""How a run spreads over processes: ``strategy`` = ``single`` | ``ddp`` | ``fsdp`` (mixed into :class:`workbench.Run`).

* ``ddp`` — :class:`~torch.nn.parallel.DistributedDataParallel` wraps the model the loss runs through
  (:mod:`workbench.execution`); every rank holds the whole model (:mod:`workbench.distributed`).
* ``fsdp`` — the model itself is sharded with FSDP2 at setup (:mod:`workbench.fsdp`); probes gather it.
* A subclass whose step runs several forward/backward passes through ``run.model`` (Unlearn: forget term,
  retain term, SAM's perturbed pass, a frozen π_ref) sets ``AVERAGES_GRADIENTS_AFTER_STEP``: under ``ddp``
  it is not DDP-wrapped (DDP's reducer expects one forward and one backward per synchronisation); its
  gradients are averaged over the ranks once, after the step (:func:`workbench.distributed.average`), and its
  weights are broadcast from rank 0 at setup as DDP would. Such a step cannot run sharded: ``fsdp`` is refused.

In every case the loss and metrics are averaged over the ranks, so each rank's history is the global batch's.
"""

from __future__ import annotations

import torch

from . import distributed, fsdp
from .errors import ConfigError


class RunParallel:
    """The strategy checks and the per-step synchronisation of :class:`workbench.Run`."""

    #: see the module docstring: gradients averaged after the step instead of by a DDP wrapper (``ddp`` only)
    AVERAGES_GRADIENTS_AFTER_STEP = False

    def _check_strategy(self) -> None:
        """Refuse a strategy this run cannot take (before anything changes), saying what to do instead."""
        from .run import Run

        sharded = fsdp.is_sharded(getattr(self, "model", None))  # (None while Run.__init__ checks its arguments)
        if self.strategy == "single":
            if sharded:
                raise ConfigError("This run's model is sharded (strategy='fsdp'); it cannot return to one process. Save "
                                  "a checkpoint and resume it with strategy='single' (or any other).")
            return
        distributed.check_launched(self.strategy)
        custom = type(self).forward_backward is not Run.forward_backward
        if custom and not self.AVERAGES_GRADIENTS_AFTER_STEP:
            raise ConfigError(f"strategy={self.strategy!r} is not available for {type(self).__name__} yet: its step "
                              "computes its own losses outside the data-parallel model. Use strategy='single'.")
        if self.strategy == "fsdp" and self.AVERAGES_GRADIENTS_AFTER_STEP:
            raise ConfigError(f"strategy='fsdp' is not available for {type(self).__name__}: its step runs several "
                              "passes of the full model (and may keep a frozen copy of it). Use strategy='ddp'.")
        if self.strategy != "fsdp" and sharded:
            raise ConfigError(f"This run's model is sharded (strategy='fsdp'); it cannot switch to {self.strategy!r}. "
                              "Save a checkpoint and resume it with that strategy.")

    def _ddp_wrapped(self) -> bool:
        """Whether the loss runs through a DDP wrapper (``ddp``, unless gradients are averaged after the step)."""
        return self.strategy == "ddp" and not self.AVERAGES_GRADIENTS_AFTER_STEP

    def _resolve_device(self) -> torch.device:
        from . import devices

        device = devices.resolve_device(self.device)
        if self.strategy == "single":
            return device
        device = distributed.init(device, self.strategy)
        if self.AVERAGES_GRADIENTS_AFTER_STEP:  # what DDP's constructor does: every rank starts from rank 0's weights
            for module in self.modules_to_broadcast():
                distributed.broadcast_module(module.to(device))
        return device

    def modules_to_broadcast(self) -> list:
        """Modules every rank copies from rank 0 when it joins (no DDP wrapper does it); subclasses add theirs."""
        return [self.model]

    def _world_size(self) -> int:
        return distributed.world_size() if self.strategy != "single" else 1

    def _synchronize(self, loss: torch.Tensor, metrics: dict) -> tuple[torch.Tensor, dict]:
        """After the step's backward: average gradients (if no wrapper did) and the logged loss/metrics over ranks."""
        if self.strategy == "single":
            return loss, metrics
        if not self._ddp_wrapped() and self.strategy == "ddp":
            distributed.average([p.grad for p in self.model.parameters() if p.grad is not None])
        return distributed.mean_across_ranks(loss, metrics)
