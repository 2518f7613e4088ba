"""Grokking setup: a tiny transformer or MLP on modular arithmetic, an accuracy probe, and a run function.

"Dichotomy of early and late implicit biases" explains grokking as a large init + small weight decay:
training first fits in a kernel (lazy) regime, then weight decay slowly shrinks the weights until a
sudden transition to a rich, generalizing solution. The dials here are ``init_scale`` (the ``scale``
recipe on every weight matrix, embeddings included) and ``weight_decay`` (AdamW).

:func:`tiny_transformer` is a GPT-2 block stack over the two operand tokens whose last-position logits
are the ``p`` classes, so it trains with the dataset's classification loss.

>>> m = tiny_transformer(p=7, d_model=16, n_layer=1, n_head=2)
>>> import torch; m(torch.tensor([[1, 2], [3, 4]])).shape
torch.Size([2, 7])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..probes import PROBES, Probe


class TokenClassifier(nn.Module):
    """A causal LM read at the last position: ``x [batch, n_tokens]`` (long) → logits ``[batch, vocab]``."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=x).logits[:, -1]  # [batch, vocab]


def tiny_transformer(p: int = 31, d_model: int = 64, n_layer: int = 1, n_head: int = 4, seed: int = 0) -> TokenClassifier:
    """A GPT-2-style transformer (``gpt2-1m`` preset, resized) with vocabulary = classes = ``p``."""
    from ..models import build

    lm = build("gpt2-1m", vocab_size=p, seed=seed, n_layer=n_layer, n_embd=d_model, n_head=n_head, n_positions=8)
    model = TokenClassifier(lm)
    model.workbench_origin = {"builder": "tiny_transformer", "p": p, "d_model": d_model, "n_layer": n_layer,
                              "n_head": n_head, "seed": seed}
    return model


@PROBES.register("split_accuracy", help="loss and accuracy of a classification model on held-out splits")
class SplitAccuracy(Probe):
    """``<split>_accuracy`` and ``<split>_loss`` over whole splits (eval mode, no grad), via the dataset loss."""

    def __init__(self, splits=("train", "val"), batch_size: int = 2048, **kw):
        super().__init__(**kw)
        self.splits, self.batch_size = tuple(splits), batch_size

    @torch.no_grad()
    def measure(self, run) -> dict:
        model, out = run.model, {}
        was_training = model.training
        model.eval()
        try:
            for name in self.splits:
                split = run.data.split(name)
                tot_loss = tot_acc = 0.0
                for batch in split.batches(self.batch_size):
                    batch = {k: v.to(run.torch_device) for k, v in batch.items()}
                    loss, metrics = run.data.loss(model, batch)
                    n = len(batch["y"])
                    tot_loss, tot_acc = tot_loss + float(loss) * n, tot_acc + metrics.get("accuracy", math.nan) * n
                out[f"{name}_loss"], out[f"{name}_accuracy"] = tot_loss / len(split), tot_acc / len(split)
        finally:
            model.train(was_training)
        out["weight_norm"] = float(torch.sqrt(sum((q.detach().float() ** 2).sum() for q in model.parameters())))
        return out


def tiny_mlp(p: int = 47, d_embed: int = 32, d_hidden: int = 256, seed: int = 0) -> nn.Module:
    """Embed both operands (``d_embed`` each), one ReLU layer of ``d_hidden``, logits over the ``p`` classes.

    Full-batch AdamW on ``(a + b) mod 47`` with half the pairs fits the training set in ~100 steps and
    generalizes ~2000 steps later at lr 3e-3 (9–17 ms/step on one CPU core): grokking within a notebook's time
    budget (notebooks/grokking.py).
    """
    from ..models.theory import mlp

    return mlp(d_in=d_embed, d_hidden=d_hidden, d_out=p, depth=1, seed=seed, vocab=p, n_tokens=2)


ARCHITECTURES = ("transformer", "mlp")


def grokking_run(p: int = 31, train_fraction: float = 0.5, init_scale: float = 1.0, weight_decay: float = 1.0,
                 lr: float = 1e-3, steps: int = 3000, batch_size: int = 512, d_model: int = 64, every: int = 100,
                 seed: int = 0, architecture: str = "transformer", device: str = "cpu"):
    """Train a small model on ``(a + b) mod p``; returns the finished :class:`~workbench.Run`.

    ``architecture``: ``"transformer"`` (:func:`tiny_transformer`, width ``d_model``) or ``"mlp"``
    (:func:`tiny_mlp`, embedding ``d_model // 2``, hidden ``4·d_model``). Records ``train_accuracy``,
    ``val_accuracy``, ``weight_norm``, ``relative_distance_from_init`` (and per-matrix
    ``delta_rel_norm``) every ``every`` steps.
    """
    from .. import data
    from ..errors import ConfigError
    from ..init import apply
    from ..run import Run
    from .weight_change import WeightChange

    if architecture not in ARCHITECTURES:
        raise ConfigError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}.")
    ds = data.load("modular_arithmetic", p=p, train_fraction=train_fraction, seed=seed)
    if architecture == "mlp":
        model = tiny_mlp(p=p, d_embed=max(1, d_model // 2), d_hidden=4 * d_model, seed=seed)
    else:
        model = tiny_transformer(p=p, d_model=d_model, seed=seed)
    if init_scale != 1.0:
        apply(model, "scale", factor=init_scale, embeddings=True)
    run = Run(model, ds, probes=[SplitAccuracy(every=every), WeightChange(every=every)], optimizer="adamw", lr=lr,
              weight_decay=weight_decay, batch_size=batch_size, max_steps=steps, seed=seed, eval_every=0,
              log_every=every, grad_clip=0.0, device=device, label=f"scale={init_scale:g}, wd={weight_decay:g}")
    return run.run(progress=False)


def transition_steps(record, train_threshold: float = 0.99, val_threshold: float = 0.9) -> dict:
    """First step where train accuracy ≥ ``train_threshold`` and where val accuracy ≥ ``val_threshold`` (NaN if never)."""
    def first(var, thr):
        da = record[var].dropna("step")
        hit = da.step.values[da.values >= thr]
        return float(hit[0]) if len(hit) else math.nan

    fit, gen = first("train_accuracy", train_threshold), first("val_accuracy", val_threshold)
    return {"fit_step": fit, "generalize_step": gen, "delay": gen - fit}
