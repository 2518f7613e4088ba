"""LoRA-SB: a trainable r×r matrix between fixed B and A taken from the SVD of the first full gradient.

LoRA-SB ("Initialization using Update Approximation is a Silver Bullet for Extreme Efficient
Fine-Tuning") uses the LoRA-XS structure

    W = W0 + s · B R A        B [out, r] fixed, R [r, r] trainable, A [r, in] fixed

and chooses B and A so that the trainable subspace is the one the first full fine-tuning step would
move in: with the full gradient G = ∂L/∂W (accumulated over the first ``init_batches`` training
batches), ``-G = U Σ Vᵀ``, B = U[:, :r], A = Vᵀ[:r]. Then ∂L/∂R = s · Bᵀ G Aᵀ = −s · Σ_r (diagonal), so
gradient descent on R starts along the best rank-r approximation of the full-FT update.

PEFT does not implement LoRA-SB, so this module does, as a wrapper around ``nn.Linear`` and GPT-2's
``Conv1D``. The wrapper owns the base layer's own ``weight``/``bias`` Parameters (same names, so state
dicts and :func:`workbench.weight_matrices` names line up with the base model) and defines
``workbench_effective_weight()`` so spectra and ΔW see ``W0 + s·BRA`` in ``[out, in]`` orientation.
Adapter tensors are named ``workbench_adapter_*`` (skipped as matrices of their own).

``R`` starts at 0 (``start="zero"``, the default): the adapted model equals the base at step 0, like
every other init in the lab. ``start="first_step"`` sets ``R0 = lr · Σ_r / s`` so that ``s·B R0 A`` is the
rank-r projection of one SGD step of size ``lr`` — the paper's "update approximation" — and is then,
deliberately, not a no-op.

>>> import torch
>>> lin = torch.nn.Linear(6, 4)
>>> g = torch.randn(4, 6)                                                  # a gradient [out, in]
>>> layer = LoraSBLayer(lin, g, rank=2, scaling=1.0)
>>> torch.allclose(layer.workbench_effective_weight(), lin.weight)         # R = 0: a no-op
True
>>> layer(torch.randn(3, 6)).shape
torch.Size([3, 4])
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..matrices import is_conv1d


def oriented_weight(module: nn.Module) -> torch.Tensor:
    """``module.weight`` as ``[out, in]`` (transposes GPT-2 Conv1D's ``[in, out]``)."""
    return module.weight.T if is_conv1d(module) else module.weight


class LoraSBLayer(nn.Module):
    """``y = base(x) + s · dropout(x) Aᵀ Rᵀ Bᵀ`` with B, A fixed buffers and R trainable.

    Parameters
    ----------
    base : ``nn.Linear`` or GPT-2 ``Conv1D``; its ``weight``/``bias`` Parameters are adopted (frozen).
    grad : the full gradient of the loss w.r.t. the base weight, ``[out, in]``.
    rank : r; at most ``min(out, in)``.
    scaling : s (``alpha / r``, or ``alpha / sqrt(r)`` for rsLoRA).
    dropout : dropout on the adapter's input.
    start : ``"zero"`` (R0 = 0, a no-op) or ``"first_step"`` (R0 = lr·Σ_r/s, see the module docstring).
    lr : step size for ``start="first_step"``.
    """

    def __init__(self, base: nn.Module, grad: torch.Tensor, rank: int, scaling: float, dropout: float = 0.0,
                 start: str = "zero", lr: float = 1e-3):
        super().__init__()
        w = oriented_weight(base)  # [out, in]
        out_f, in_f = w.shape
        if not 1 <= rank <= min(out_f, in_f):
            raise ConfigError(f"LoRA-SB rank must be in [1, {min(out_f, in_f)}] for a {out_f}×{in_f} matrix, got {rank}.")
        if tuple(grad.shape) != (out_f, in_f):
            raise ConfigError(f"LoRA-SB gradient has shape {tuple(grad.shape)}, expected [out, in] = {(out_f, in_f)}.")
        if start not in ("zero", "first_step"):
            raise ConfigError(f"LoRA-SB start must be 'zero' or 'first_step', got {start!r}.")
        self.transposed = is_conv1d(base)
        self.weight = base.weight
        self.weight.requires_grad_(False)
        self.bias = base.bias
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.in_features, self.out_features, self.rank, self.scaling = in_f, out_f, int(rank), float(scaling)
        U, S, Vh = torch.linalg.svd(-grad.detach().float(), full_matrices=False)  # U [out, k], Vh [k, in]
        dtype, device = w.dtype, w.device
        self.register_buffer("workbench_adapter_B", U[:, :rank].contiguous().to(device, dtype))   # [out, r]
        self.register_buffer("workbench_adapter_A", Vh[:rank].contiguous().to(device, dtype))     # [r, in]
        self.register_buffer("workbench_adapter_grad_sv", S[:rank].to(device, dtype))             # [r]
        r0 = torch.zeros(rank, rank, dtype=dtype, device=device)
        if start == "first_step":
            r0 = torch.diag(S[:rank] * lr / self.scaling).to(device, dtype)
        self.workbench_adapter_R = nn.Parameter(r0)                                                # [r, r]
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., in]
        w = self.weight.T if not self.transposed else self.weight  # [in, out]
        y = x @ w.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        h = self.dropout(x) @ self.workbench_adapter_A.T.to(x.dtype)            # [..., r]
        h = h @ self.workbench_adapter_R.T.to(x.dtype)                          # [..., r]
        return y + self.scaling * (h @ self.workbench_adapter_B.T.to(x.dtype))  # [..., out]

    def delta_weight(self) -> torch.Tensor:
        """``s · B R A`` as ``[out, in]``."""
        return self.scaling * self.workbench_adapter_B @ self.workbench_adapter_R @ self.workbench_adapter_A

    @torch.no_grad()
    def workbench_effective_weight(self) -> torch.Tensor:
        """The weight this layer applies, ``W0 + s·BRA``, as ``[out, in]`` (what spectra analyse)."""
        w = self.weight.T if self.transposed else self.weight
        return (w + self.delta_weight().to(w.dtype)).detach()

    @torch.no_grad()
    def merged_module(self) -> nn.Module:
        """A plain ``nn.Linear`` (or Conv1D) whose weight is the effective weight (new tensors)."""
        w = self.workbench_effective_weight()  # [out, in]
        if self.transposed:
            from transformers.pytorch_utils import Conv1D

            m = Conv1D(self.out_features, self.in_features)
            m.weight.data.copy_(w.T)
        else:
            m = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
            m.weight.data.copy_(w)
        if self.bias is not None:
            m.bias.data.copy_(self.bias)
        return m.to(device=w.device, dtype=w.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, scaling={self.scaling:g}"


def full_gradients(model: nn.Module, modules: dict[str, nn.Module], loss_fn, batches) -> dict[str, torch.Tensor]:
    """Mean gradient ``[out, in]`` of ``loss_fn(model, batch)`` w.r.t. each module's weight over ``batches``.

    Gradients are computed for these weights only; every ``requires_grad`` flag and ``.grad`` is restored.
    """
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    saved = [p.grad for p in params]
    was_training = model.training
    try:
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        for m in modules.values():
            m.weight.requires_grad_(True)
        model.train()
        n = 0
        for batch in batches:
            loss, _ = loss_fn(model, batch)
            loss.backward()
            n += 1
        if n == 0:
            raise ConfigError("LoRA-SB needs at least one batch of data for its gradient (init_batches ≥ 1).")
        grads = {name: (oriented_weight_grad(m) / n).detach().clone() for name, m in modules.items()}
    finally:
        for p, f, g in zip(params, flags, saved):
            p.grad = g
            p.requires_grad_(f)
        model.train(was_training)
    return grads


def oriented_weight_grad(module: nn.Module) -> torch.Tensor:
    g = module.weight.grad
    if g is None:
        return torch.zeros_like(oriented_weight(module))
    return g.T if is_conv1d(module) else g


def apply_lora_sb(model: nn.Module, modules: dict[str, nn.Module], grads: dict[str, torch.Tensor], rank: int,
                  scaling: float, dropout: float = 0.0, start: str = "zero", lr: float = 1e-3) -> nn.Module:
    """Replace each module in ``modules`` (full module name → module) by a :class:`LoraSBLayer`, in place.

    Every other parameter of the model is frozen; only the R matrices train.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in modules.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoraSBLayer(module, grads[name], rank, scaling, dropout, start, lr))
    model.workbench_lora_sb = True
    return model


def lora_sb_layers(model: nn.Module) -> dict[str, LoraSBLayer]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoraSBLayer)}


def merge_lora_sb(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoraSBLayer` by a plain layer holding its effective weight, in place."""
    for name, layer in lora_sb_layers(model).items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.merged_module())
    if hasattr(model, "workbench_lora_sb"):
        del model.workbench_lora_sb
    return model
