"""Representation alignment of a hidden layer between init and now: uncentered and centered (linear CKA).

With ``H [n, d]`` the hidden activations on a fixed probe batch, the representational kernels are
``G = H Hᵀ``. ``alignment(G_0, G_t)`` = ⟨G_0, G_t⟩_F/(‖G_0‖‖G_t‖); the centered version (``C G C``,
``C = I − 11ᵀ/n``) is linear CKA (Kornblith et al., 2019). Rich learning moves representations
(alignment drops); lazy learning leaves them (alignment ≈ 1).

>>> import torch
>>> h = torch.randn(10, 4)
>>> round(linear_cka(h, 2 * h + 1), 6)
1.0
"""

from __future__ import annotations

import contextlib

import param
import torch
from torch import nn

from ..errors import ConfigError
from ..probes import PROBES, Probe
from ._common import model_device, probe_batch
from .kernel import kernel_alignment


def gram(h: torch.Tensor, centered: bool = False) -> torch.Tensor:
    h = h.reshape(h.shape[0], -1).double()  # [n, d]
    if centered:
        h = h - h.mean(0, keepdim=True)
    return h @ h.T  # [n, n]


def representation_alignment(h0: torch.Tensor, h1: torch.Tensor, centered: bool = False) -> float:
    """Alignment of the Gram matrices of two representations of the same examples (centered = linear CKA)."""
    if h0.shape[0] != h1.shape[0]:
        raise ConfigError(f"Representations must cover the same examples: {h0.shape[0]} vs {h1.shape[0]} rows.")
    return kernel_alignment(gram(h0, centered), gram(h1, centered))


def linear_cka(h0: torch.Tensor, h1: torch.Tensor) -> float:
    """Linear CKA between two representations ``[n, d0]`` and ``[n, d1]``."""
    return representation_alignment(h0, h1, centered=True)


@contextlib.contextmanager
def _capture(model: nn.Module, module_name: str, store: list):
    modules = dict(model.named_modules())
    if module_name not in modules:
        raise ConfigError(f"Module {module_name!r} not found in {type(model).__name__}; modules: {', '.join(list(modules)[1:20])}.")
    handle = modules[module_name].register_forward_hook(lambda m, i, o: store.append(o[0] if isinstance(o, tuple) else o))
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def hidden_representation(model: nn.Module, x: torch.Tensor, layer: int | str = -1) -> torch.Tensor:
    """Activations ``[n, …]`` of ``layer``: an index into ``model.hidden(x, layer)`` or a module name (forward hook)."""
    was_training = model.training
    model.eval()
    try:
        if isinstance(layer, str):
            store: list = []
            with _capture(model, layer, store):
                model(x)
            return store[-1].detach()
        if not hasattr(model, "hidden"):
            raise ConfigError(f"{type(model).__name__} has no hidden(x, layer) method; pass layer= a module name instead.")
        return model.hidden(x, layer).detach()
    finally:
        model.train(was_training)


@PROBES.register("representation_alignment", help="hidden-layer alignment and CKA init vs now")
class RepresentationAlignment(Probe):
    """``rep_alignment`` (uncentered) and ``rep_cka`` (centered) of ``layer`` now vs at attach time."""

    layer = param.Parameter(default=-1, doc="Index for model.hidden(x, layer) or a module name.")
    n_examples = param.Integer(default=64, bounds=(2, None), doc="Probe batch size when no batch is given.")

    def __init__(self, batch: dict | None = None, **kw):
        super().__init__(**kw)
        self.batch = batch
        self.h0: torch.Tensor | None = None

    def setup(self, run) -> None:
        self.batch = probe_batch(run, self.batch, self.n_examples)
        if "x" not in self.batch:
            raise ConfigError(f"RepresentationAlignment needs a batch with 'x'; got keys {sorted(self.batch)}.")
        try:
            self.h0 = hidden_representation(run.model, self.batch["x"].to(model_device(run.model)), self.layer)
        except (RuntimeError, IndexError) as exc:
            raise ConfigError(f"Cannot read layer {self.layer!r} on the probe batch x {tuple(self.batch['x'].shape)}: {exc}") from None

    def measure(self, run) -> dict:
        h = hidden_representation(run.model, self.batch["x"].to(run.torch_device), self.layer)
        h0 = self.h0.to(h.device)
        return {"rep_alignment": representation_alignment(h0, h), "rep_cka": representation_alignment(h0, h, centered=True)}
