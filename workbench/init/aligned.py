"""``aligned``: a low-rank init whose singular vectors come from the task, not from the random init.

"How connectivity structure shapes rich and lazy learning" shows that low rank alone does not make
learning rich: a low-rank init *aligned with the task* can stay lazy. This recipe builds that init.
For each selected matrix ``W [out, in]`` it forms a task statistic ``T`` of the same shape:

* ``statistic="gradient"`` (any matrix): ``T = −∂L/∂W`` at the current weights on ``n_examples``
  training examples — the direction one gradient step would move ``W`` (the task's first-gradient
  low-rank structure; as in LoRA-GA's use of the first gradient).
* ``statistic="cross_covariance"`` (input–output matrices only): ``T = Σ_yx = E[y xᵀ]`` over training
  examples (time steps pooled for sequences; classification targets one-hot, ignored labels dropped);
  only matrices of shape ``[d_out, d_in]`` of the task qualify.

Then ``W_new = ‖W‖_F · trunc_r((1 − a)·Ŵ_r + a·T̂_r) / ‖·‖_F`` where ``X̂_r`` is the rank-``r`` SVD
truncation of ``X`` normalized to unit Frobenius norm and ``a = alignment``: ``a = 1`` is the purely
task-aligned rank-r init, ``a = 0`` is :mod:`low_rank`'s init, and values between interpolate while
keeping rank ``r`` and the Frobenius norm.

Pass the task as ``apply(model, "aligned", data=dataset)`` (a :class:`workbench.data.Dataset` or a batch
dict with ``x``/``y``); ``loss=`` overrides ``dataset.loss`` for the gradient.
"""

from __future__ import annotations

import param
import torch
import torch.nn.functional as F

from .. import rng
from ..errors import ConfigError
from .base import InitRecipe, check_rank, frobenius_rescale, truncate
from .registry import register


def _batch(data, n: int, seed: int) -> dict:
    if isinstance(data, dict):
        return {k: v[:n] for k, v in data.items()}
    if hasattr(data, "train"):
        return data.train.batch_at(0, min(n, len(data.train)), seed)
    raise ConfigError(f"The aligned init needs task data: pass data= a workbench Dataset or a batch dict, got {type(data).__name__}.")


def cross_covariance(batch: dict) -> torch.Tensor:
    """``E[y xᵀ]`` ``[d_out, d_in]`` from a batch with float ``x [n, (T,) d_in]`` and ``y``."""
    if "x" not in batch or "y" not in batch:
        raise ConfigError(f"cross_covariance needs a batch with 'x' and 'y', got keys {sorted(batch)}.")
    x, y = batch["x"], batch["y"]
    if not x.is_floating_point():
        raise ConfigError("cross_covariance needs real-valued inputs x (token inputs: use statistic='gradient').")
    x = x.float().reshape(-1, x.shape[-1])  # [n·T, d_in]
    if y.is_floating_point():
        y = y.float().reshape(-1, y.shape[-1]) if y.ndim > 1 else y.float()[:, None]  # [n·T, d_out]
    else:
        labels = y.reshape(-1)
        keep = labels != -100
        x, labels = x[keep], labels[keep]
        y = F.one_hot(labels, int(labels.max()) + 1).float()
        y = y - y.mean(0)  # centered: the class-mean structure, not the class frequencies
    if y.shape[0] != x.shape[0]:
        raise ConfigError(f"cross_covariance: x gives {x.shape[0]} rows but y gives {y.shape[0]}; shapes {tuple(batch['x'].shape)} / {tuple(batch['y'].shape)}.")
    return y.T @ x / x.shape[0]  # [d_out, d_in]


@register("aligned", help="task-aligned low-rank init (top singular vectors of −∇L or of E[y xᵀ]), equal norm")
class Aligned(InitRecipe):
    """Rank-r init whose singular vectors come from the task; ``alignment`` dials from random (0) to task (1)."""

    rank = param.Integer(default=1, bounds=(1, None), softbounds=(1, 300), doc="Rank of the init.")
    alignment = param.Number(default=1.0, bounds=(0, 1), doc="0: random low-rank (low_rank), 1: fully task-aligned.")
    statistic = param.Selector(default="gradient", objects=["gradient", "cross_covariance"],
                               doc="Task statistic: −∇L at init (any matrix) or E[y xᵀ] (shape [d_out, d_in]).")
    n_examples = param.Integer(default=256, bounds=(1, None), doc="Training examples used for the statistic.")

    needs_data = True

    def prepare(self, model, names, context):
        data = context.get("data")
        if data is None:
            raise ConfigError("The 'aligned' init needs the task: call apply(model, 'aligned', data=dataset, ...).")
        batch = _batch(data, self.n_examples, self.seed)
        if self.statistic == "cross_covariance":
            return {"task": {"*": cross_covariance(batch)}}
        loss_fn = context.get("loss") or getattr(data, "loss", None)
        if loss_fn is None:
            raise ConfigError("statistic='gradient' needs a loss: pass a Dataset (its task loss) or loss=fn(model, batch).")
        owners = context["params"]  # name -> (parameter, transposed)
        params = [owners[n][0] for n in names]
        device = params[0].device if params else "cpu"
        batch = {k: v.to(device) for k, v in batch.items()}
        was_training = model.training
        model.eval()
        try:
            with rng.isolated(), torch.enable_grad():
                loss, _ = loss_fn(model, batch)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
        finally:
            model.train(was_training)
        task = {}
        for n, g in zip(names, grads):
            if g is None:
                raise ConfigError(f"Matrix {n!r} gets no gradient from the task loss, so it has no task-aligned direction; "
                                  "exclude it or use another recipe.")
            g = -g.detach().float()
            task[n] = g.T if owners[n][1] else g
        return {"task": task}

    def transform(self, w: torch.Tensor, name: str, context: dict) -> torch.Tensor:
        check_rank(self.rank, w, name)
        task = context["task"].get(name, context["task"].get("*"))
        if task.shape != w.shape:
            raise ConfigError(f"Matrix {name!r} has shape {tuple(w.shape)} but the task cross-covariance E[y xᵀ] has shape "
                              f"{tuple(task.shape)}; select only [d_out, d_in] matrices or use statistic='gradient'.")
        task = task.to(w)
        t_r = truncate(task, self.rank)
        if t_r.norm() <= 0:
            raise ConfigError(f"Matrix {name!r}: the task statistic is zero, so there is nothing to align with.")
        mixed = t_r / t_r.norm()
        if self.alignment < 1:
            w_r = truncate(w, self.rank)
            mixed = (1 - self.alignment) * w_r / w_r.norm() + self.alignment * mixed
        return frobenius_rescale(truncate(mixed, self.rank), w, name)
