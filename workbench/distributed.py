"""Data-parallel runs (``strategy="ddp"`` or ``"fsdp"``) on torch.distributed, launched by ``torchrun``.

Why ``torchrun`` (``torch.distributed.run``) rather than ``accelerate launch``: it is torch's own launcher,
so a run needs no extra configuration layer (no ``accelerate config`` file) and nothing between the
process group and :class:`~torch.nn.parallel.DistributedDataParallel`; ``workbench train
--nproc-per-node N`` calls its Python API (:func:`launch`), so there is no home-made process management.

What a DDP run guarantees (tested on two ``gloo`` processes against one process, same global batch):

* ``batch_size`` is the *global* batch: batch ``i`` is drawn whole as ``f(seed, i)`` on every rank and rank
  ``r`` of ``W`` trains on its rows ``r::W`` (:func:`shard`); with ``grad_accum_steps`` each rank then cuts its
  shard into micro-batches (:mod:`workbench.accumulate`). DDP averages the gradients, so every rank steps
  with the gradient of the whole batch and the weights stay identical;
* the logged ``loss`` and metrics are averaged over the ranks (:func:`mean_across_ranks`), so every rank's
  history — and rank 0's record — is that of the whole batch;
* only rank 0 writes records and checkpoints and runs the probes the CLI attaches (DDP keeps the full
  weights on every rank, so a probe on rank 0 sees the whole model).

Backends: ``gloo`` on CPU, ``nccl`` on CUDA (each rank on ``cuda:LOCAL_RANK``).

>>> import torch
>>> batch = {"x": torch.arange(6)}
>>> [shard(batch, r, 2)["x"].tolist() for r in range(2)]
[[0, 2, 4], [1, 3, 5]]
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .errors import ConfigError

STRATEGIES = ("single", "ddp", "fsdp")
#: the strategies that run in several processes (the sharded one is :mod:`workbench.fsdp`)
PARALLEL = ("ddp", "fsdp")


def launched() -> bool:
    """True inside a process started by ``torchrun`` (or any launcher that sets the torch.distributed env)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    return dist.get_world_size() if active() else int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    """Rank 0 (or not distributed): the process that writes records and checkpoints."""
    return rank() == 0


def check_launched(strategy: str = "ddp") -> None:
    """Refuse a multi-process ``strategy`` in a process no launcher started (say how to launch it)."""
    if not launched() and not active():
        flag = "" if strategy == "ddp" else f" --strategy {strategy}"
        raise ConfigError(f"strategy={strategy!r} needs processes started by a launcher: use `workbench train "
                          f"--nproc-per-node N{flag} ...` (or `torchrun --nproc-per-node N -m workbench.cli train ... "
                          f"--set strategy={strategy}`); in a single process use strategy='single'.")


def init(device: torch.device, strategy: str = "ddp") -> torch.device:
    """Join the launcher's process group (once) and return this rank's device (``cuda:LOCAL_RANK`` on GPUs)."""
    check_launched(strategy)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"strategy={strategy!r} runs on CPU (gloo) or CUDA (nccl), not {device.type}; use device='cpu' "
                          "or 'cuda'.")
    if not active():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown() -> None:
    """Leave the process group (end of a launched job)."""
    if active():
        dist.destroy_process_group()


def shard(batch: dict, r: int | None = None, world: int | None = None) -> dict:
    """Rank ``r``'s rows ``r::world`` of the global ``batch`` (the whole batch when not distributed)."""
    r = rank() if r is None else r
    world = world_size() if world is None else world
    if world == 1:
        return batch
    return {k: v[r::world] for k, v in batch.items()}


def mean_across_ranks(loss: torch.Tensor, metrics: dict[str, float]) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss and metrics averaged over every rank (one all-reduce), so each rank logs the global batch's."""
    if not active() or world_size() == 1:
        return loss, metrics
    keys = sorted(metrics)
    values = torch.tensor([float(loss), *(float(metrics[k]) for k in keys)], dtype=torch.float64, device=loss.device)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    values /= world_size()
    return values[0].to(loss.dtype), {k: float(v) for k, v in zip(keys, values[1:].tolist())}


def average(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor by its mean over the ranks, in place (one all-reduce of them flattened together).

    Used for gradients of a step that DDP's reducer cannot wrap (several passes, ``autograd.grad``: Unlearn,
    SAM), once per step — what DDP does bucket by bucket during backward.
    """
    if not active() or world_size() == 1 or not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1).to(torch.float32) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    offset = 0
    for t in tensors:
        n = t.numel()
        t.detach().copy_(flat[offset:offset + n].view_as(t))
        offset += n


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (as DDP's constructor does)."""
    if not active() or world_size() == 1:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def launch(argv: list[str], nproc_per_node: int) -> int:
    """Run ``python -m workbench.cli *argv`` in ``nproc_per_node`` processes through torchrun's Python API.

    Single node, rendezvous on a free local port (``--standalone``); a failed rank stops the others and
    raises torch's ``ChildFailedError`` naming it.
    """
    if nproc_per_node < 1:
        raise ConfigError(f"--nproc-per-node must be ≥ 1, got {nproc_per_node}.")
    from torch.distributed.run import parse_args, run

    run(parse_args(["--standalone", "--nproc-per-node", str(nproc_per_node), "--module", "workbench.cli", *argv]))
    return 0
