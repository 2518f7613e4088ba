"""WAGLE-style weight attribution (Jia et al., 2024, "WAGLE: Strategic Weight Attribution for Effective
and Modular Unlearning in Large Language Models").

Each trainable weight gets the score

    s = |(θ − ∇ℓ_retain(θ) / μ) ⊙ ∇ℓ_forget(θ)|

(ℓ_forget: the method's forget term; ℓ_retain: mean token NLL on retain answers; μ > 0 plays the role of
a diagonal Hessian, so large μ reduces the score to |θ ⊙ ∇ℓ_forget|). The top ``fraction`` of weights by
score — one global threshold over all trainable tensors — may change; the unlearning update is masked
to them.

How the mask is enforced (:class:`WeightMask`), so that no optimizer can move a masked weight:
* ``after_backward``: masked gradient entries are zeroed before clipping and the optimizer step, so
  the clip norm and Adam's moments only see unmasked entries;
* ``after_step``: masked entries are copied back from the values they had when the mask was built.
  This is what stops decoupled weight decay (AdamW moves every weight by −lr·wd·θ, gradient or not)
  and momentum left over from earlier steps. The masked weights are therefore bit-identical to their
  start values after any number of steps (tested with ``weight_decay > 0``).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import ConfigError


def attribution_scores(named_params: dict[str, torch.nn.Parameter], forget_loss: Callable[[], torch.Tensor],
                       retain_loss: Callable[[], torch.Tensor], mu: float) -> dict[str, torch.Tensor]:
    """WAGLE scores ``{name: |(θ − g_r/μ) ⊙ g_f|}`` for the given parameters (no ``.grad`` is touched)."""
    if mu <= 0:
        raise ConfigError(f"mu must be > 0 (it divides the retain gradient), got {mu!r}.")
    names = list(named_params)
    params = [named_params[n] for n in names]
    g_f = torch.autograd.grad(forget_loss(), params, allow_unused=True)
    g_r = torch.autograd.grad(retain_loss(), params, allow_unused=True)
    out = {}
    for n, p, gf, gr in zip(names, params, g_f, g_r):
        gf = torch.zeros_like(p) if gf is None else gf
        gr = torch.zeros_like(p) if gr is None else gr
        out[n] = ((p.detach() - gr / mu) * gf).abs().float()
    return out


def top_fraction_mask(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Boolean masks keeping the ``fraction`` highest scores over all tensors (ties broken by order)."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"mask_fraction must be in (0, 1] (the fraction of weights that may change), got {fraction!r}.")
    flat = torch.cat([s.flatten() for s in scores.values()])  # [n_weights]
    k = max(1, int(round(fraction * flat.numel())))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.topk(flat, k, sorted=False).indices] = True
    masks, pos = {}, 0
    for name, s in scores.items():
        masks[name] = keep[pos : pos + s.numel()].view_as(s)
        pos += s.numel()
    return masks


class WeightMask:
    """Restricts training to masked-in weights (see the module docstring for how)."""

    def __init__(self, named_params: dict[str, torch.nn.Parameter], masks: dict[str, torch.Tensor]):
        self.params = {n: named_params[n] for n in masks}
        self.masks = {n: m.to(named_params[n].device) for n, m in masks.items()}
        self.frozen = {n: p.detach().clone() for n, p in self.params.items()}

    @property
    def fraction(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / max(1, total)

    def zero_masked_grads(self, run=None, **_) -> None:
        for n, p in self.params.items():
            if p.grad is not None:
                p.grad.mul_(self.masks[n].to(p.grad.dtype))

    @torch.no_grad()
    def restore_masked(self, run=None, **_) -> None:
        for n, p in self.params.items():
            p.copy_(torch.where(self.masks[n], p, self.frozen[n]))

    def attach(self, run, order: int = -10) -> "WeightMask":
        """Attach both callbacks with ``order`` (lower runs first; probes default to 100, so the default
        ``-10`` restores the masked weights before any probe measures them)."""
        run.add_callback("after_backward", self.zero_masked_grads, name=f"WAGLE mask (keep {self.fraction:.1%})",
                         order=order)
        run.add_callback("after_step", self.restore_masked, name="WAGLE mask: restore masked weights", order=order)
        return self

    def changed_outside(self) -> int:
        """Number of masked-out weights that differ from their frozen values (0 unless something broke)."""
        return sum(int(((p.detach() != self.frozen[n]) & ~self.masks[n]).sum()) for n, p in self.params.items())


def named_trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


