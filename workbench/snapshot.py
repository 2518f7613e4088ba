"""The reference snapshot W0: every weight matrix as it was when a run started.

Probes compare against it (distance from init, intruder dimensions, ΔW for LoRA inits that rewrite
the base). Matrices follow :mod:`workbench.matrices` conventions (canonical names, ``[out, in]``).
Stored on the model's device in fp32, or bf16 (``dtype=torch.bfloat16``) to halve memory.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from .matrices import weight_matrices


class Snapshot:
    """Named reference matrices; ``snapshot[name]`` is a ``[out, in]`` tensor."""

    def __init__(self, matrices: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32):
        self.dtype = dtype
        self.matrices = {k: v.detach().to(dtype=dtype).clone() for k, v in matrices.items()}

    @classmethod
    def from_model(cls, model: nn.Module, dtype: torch.dtype = torch.float32, **select) -> "Snapshot":
        """Snapshot of ``weight_matrices(model, **select)``."""
        return cls(weight_matrices(model, **select), dtype=dtype)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.matrices[name]

    def get(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Matrix ``name`` as ``dtype`` (fp32 by default, for analyses)."""
        return self.matrices[name].to(dtype)

    def __contains__(self, name: object) -> bool:
        return name in self.matrices

    def __iter__(self) -> Iterator[str]:
        return iter(self.matrices)

    def __len__(self) -> int:
        return len(self.matrices)

    def names(self) -> list[str]:
        return list(self.matrices)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.matrices.values())

    def to(self, device) -> "Snapshot":
        self.matrices = {k: v.to(device) for k, v in self.matrices.items()}
        return self

    def state_dict(self) -> dict:
        return {"dtype": str(self.dtype).replace("torch.", ""), "matrices": {k: v.cpu() for k, v in self.matrices.items()}}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Snapshot":
        return cls(state["matrices"], dtype=getattr(torch, state.get("dtype", "float32")))

    def __repr__(self) -> str:
        return f"Snapshot({len(self)} matrices, {self.dtype}, {self.nbytes() / 2**20:.1f} MiB)"
