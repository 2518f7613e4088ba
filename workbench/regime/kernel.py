"""Empirical tangent kernel and kernel alignment, with ``torch.func`` (functional_call + vmap(jacrev)).

The empirical neural tangent kernel on a probe batch, w.r.t. chosen parameters θ_S, is ``K = J Jᵀ``
with ``J = ∂f(x_i)/∂θ_S`` stacked over examples and output units (``[n·o, P]``). In the lazy regime the
kernel barely moves; in the rich regime it rotates toward the task. We report

* ``kernel_alignment`` = ⟨K_0, K_t⟩_F / (‖K_0‖_F ‖K_t‖_F) — 1 when the kernel kept its shape;
* ``kernel_task_alignment`` = yᵀ K_t y / (‖K_t‖_F ‖y‖²) — alignment of the kernel with the task's yyᵀ
  (targets one-hot and centered for classification; ignored labels contribute zero rows);
* ``kernel_norm_ratio`` = ‖K_t‖_F / ‖K_0‖_F.

>>> import torch
>>> K = torch.randn(5, 5); K = K @ K.T
>>> round(kernel_alignment(K, K), 6), round(kernel_alignment(K, 3 * K), 6)
(1.0, 1.0)
"""

from __future__ import annotations

import param
import torch
import torch.nn.functional as F
from torch.func import functional_call, jacrev, vmap

from ..errors import ConfigError
from ..probes import PROBES, Probe
from ._common import check_forward, model_device, probe_batch, select_params


def _per_example(out: torch.Tensor, output: str) -> torch.Tensor:
    if output == "last" and out.ndim >= 3:
        out = out[:, -1]  # [n, d_out]: the decision at the last time step
    return out.reshape(out.shape[0], -1)  # [n, o]


def jacobian(model, x: torch.Tensor, params: list[str], output: str = "all") -> torch.Tensor:
    """``J [n·o, P]``: per-example Jacobian of the outputs w.r.t. ``params`` (vmap over examples of jacrev)."""
    named = dict(model.named_parameters())
    chosen = {n: named[n].detach() for n in params}
    fixed = {n: p.detach() for n, p in named.items() if n not in chosen}
    fixed.update(dict(model.named_buffers()))

    def f(sel, xi):
        out = functional_call(model, {**fixed, **sel}, (xi.unsqueeze(0),))
        return _per_example(out, output).squeeze(0)  # [o]

    was_training = model.training
    model.eval()
    try:
        jac = vmap(jacrev(f), in_dims=(None, 0))(chosen, x)  # name -> [n, o, *shape]
    finally:
        model.train(was_training)
    n, o = jac[params[0]].shape[:2]
    return torch.cat([jac[name].reshape(n, o, -1) for name in params], dim=-1).reshape(n * o, -1)  # [n·o, P]


def tangent_kernel(model, x: torch.Tensor, params: list[str], output: str = "all") -> torch.Tensor:
    """The empirical tangent kernel ``K = J Jᵀ`` ``[n·o, n·o]`` (float64 for stable alignments)."""
    j = jacobian(model, x, params, output).double()
    return j @ j.T


def kernel_alignment(k1: torch.Tensor, k2: torch.Tensor) -> float:
    """⟨K1, K2⟩_F / (‖K1‖_F ‖K2‖_F)."""
    k1, k2 = k1.double(), k2.double()
    den = k1.norm() * k2.norm()
    return float((k1 * k2).sum() / den) if den > 0 else float("nan")


def task_targets(y: torch.Tensor, o: int, output: str = "all") -> torch.Tensor:
    """Targets as the ``[n·o]`` vector matching the kernel's rows (one-hot, centered, for class labels)."""
    if output == "last" and y.ndim >= 2 and (y.ndim >= 3 or not y.is_floating_point()):
        y = y[:, -1]
    if y.is_floating_point():
        return y.reshape(-1).double()
    c = o if y.ndim == 1 else o // int(torch.tensor(y.shape[1:]).prod())
    mask = y != -100
    onehot = F.one_hot(y.clamp(min=0), c).double() * mask.unsqueeze(-1)  # [n, (T,) C]
    mean = onehot.sum(0) / mask.sum(0).clamp(min=1).unsqueeze(-1)
    return ((onehot - mean) * mask.unsqueeze(-1)).reshape(-1)


def task_alignment(k: torch.Tensor, y: torch.Tensor) -> float:
    """yᵀ K y / (‖K‖_F ‖y‖²): how much of the kernel's mass lies along the task's yyᵀ."""
    y = y.double()
    den = k.norm() * (y @ y)
    return float(y @ k.double() @ y / den) if den > 0 else float("nan")


@PROBES.register("kernel_alignment", help="tangent-kernel alignment init vs now (torch.func)")
class KernelAlignment(Probe):
    """Alignment of the empirical tangent kernel now with the kernel at attach time, and with the task.

    Parameters
    ----------
    params : names of the parameters the kernel is taken w.r.t. (``["weight_rec"]``), or a regex; None = all.
    batch : fixed probe batch ``{"x", "y"}``; default: the first ``n_examples`` of the run's val split.
    """

    output = param.Selector(default="all", objects=["all", "last"],
                            doc="Kernel over all output units (and time steps), or the last time step only (RNN decisions).")
    n_examples = param.Integer(default=32, bounds=(1, None), doc="Probe batch size when no batch is given.")

    def __init__(self, params=None, batch: dict | None = None, **kw):
        super().__init__(**kw)
        self.params_spec, self.batch = params, batch
        self.k0: torch.Tensor | None = None

    def setup(self, run) -> None:
        model = run.model
        self.names = select_params(model, self.params_spec)
        self.batch = probe_batch(run, self.batch, self.n_examples)
        if "x" not in self.batch:
            raise ConfigError(f"KernelAlignment needs a model called as model(x) and a batch with 'x'; got keys {sorted(self.batch)}.")
        x = self.batch["x"].to(model_device(model))
        out = check_forward(model, x)
        self.o = _per_example(out, self.output).shape[1]
        self.y = task_targets(self.batch["y"], self.o, self.output) if "y" in self.batch else None
        self.k0 = tangent_kernel(model, x, self.names, self.output)
        self.task0 = task_alignment(self.k0, self.y.to(self.k0.device)) if self.y is not None else float("nan")

    def measure(self, run) -> dict:
        x = self.batch["x"].to(run.torch_device)
        k = tangent_kernel(run.model, x, self.names, self.output)
        k0 = self.k0.to(k.device)
        out = {"kernel_alignment": kernel_alignment(k0, k), "kernel_norm_ratio": float(k.norm() / k0.norm())}
        if self.y is not None:
            out["kernel_task_alignment"] = task_alignment(k, self.y.to(k.device))
            out["kernel_task_alignment_init"] = self.task0
        return out
