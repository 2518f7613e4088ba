"""Device and precision choices, resolved once with clear errors.

``device="auto"`` picks CUDA when present, else CPU. ``autocast="auto"`` means bf16 autocast on CUDA
and full fp32 on CPU (CPU bf16 autocast is slow on most CPUs and changes results).
"""

from __future__ import annotations

import contextlib

import torch

from .errors import ConfigError, DeviceError

DEVICES = ("auto", "cpu", "cuda", "mps")
AUTOCAST = ("auto", "none", "bf16", "fp16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → cuda if available else cpu; errors name what is missing and what to pass instead."""
    if isinstance(device, torch.device):
        device = str(device)
    name = str(device)
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise ConfigError(f"Unknown device {name!r}; use one of {DEVICES} (optionally 'cuda:N').")
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device={name!r} was requested but this machine has no CUDA GPU (torch {torch.__version__}). "
                          "Use device='auto' or 'cpu'.")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"device={name!r} was requested but MPS is not available here. Use device='auto' or 'cpu'.")
    return torch.device(name)


def autocast_dtype(autocast: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``autocast`` on ``device``; ``None`` means no autocast."""
    if autocast not in AUTOCAST:
        raise ConfigError(f"Unknown autocast {autocast!r}; use one of {AUTOCAST}.")
    if autocast == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[autocast]


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """A ``torch.autocast`` context, or a no-op one when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
