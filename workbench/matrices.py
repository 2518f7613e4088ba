"""Weight matrices of a model, named and oriented the same way for every architecture.

Every analysis (spectra, intruders, weight change, reference snapshots) goes through
:func:`weight_matrices`, so they all agree on three conventions:

* **Names** are parameter names as in ``model.named_parameters()`` of the *unwrapped* model. A PEFT
  wrapper's ``base_model.model.`` prefix and ``.base_layer`` segment are removed, so a LoRA model's
  matrices line up with its base model's.
* **Orientation** is ``[out_features, in_features]`` (``nn.Linear``'s). Hugging Face GPT-2's
  ``Conv1D`` stores ``[in, out]``; it is transposed here, so left singular vectors live in the output
  space for both.
* **Effective weights**: a PEFT-wrapped layer (LoRA, DoRA, rsLoRA, VeRA, …) contributes the weight it
  actually applies, measured by probing the layer's linear map (``W = f(I) − f(0)``) in eval mode. That
  is exact for any adapter that keeps the layer linear, and it never relies on ``get_delta_weight``
  (which is wrong for inits that rewrite the base, such as PiSSA). A module can also define
  ``workbench_effective_weight() -> Tensor[out, in]`` to say what it applies.

>>> import torch
>>> m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 4))
>>> {k: tuple(v.shape) for k, v in weight_matrices(m).items()}
{'0.weight': (2, 3), '2.weight': (4, 2)}
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

import torch
from torch import nn

_PEFT_PREFIX = re.compile(r"^base_model\.model\.")
ADAPTER_MARKERS = ("lora_", "vera_", "hada_", "lokr_", "oft_", "boft_", "ia3_", "fourierft_", "miss_", "workbench_adapter")


def canonical_name(name: str) -> str:
    """Parameter name with PEFT wrapping removed: ``base_model.model.h.0.c_attn.base_layer.weight`` → ``h.0.c_attn.weight``."""
    name = _PEFT_PREFIX.sub("", name)
    return name.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".").replace(".original_module.", ".")


def is_conv1d(module: nn.Module) -> bool:
    """True for Hugging Face GPT-2's ``Conv1D`` (a linear layer storing its weight as ``[in, out]``).

    Matched by name, so the workbench needs no import of ``transformers`` to recognise it. The one test
    every module uses (matrices, init recipes, adapters, LoRA-SB).
    """
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _is_adapter_param(name: str) -> bool:
    return any(marker in name for marker in ADAPTER_MARKERS)


@torch.no_grad()
def _probe_linear(layer: nn.Module, in_features: int, weight: torch.Tensor) -> torch.Tensor:
    """Effective ``[out, in]`` weight of a linear map by applying it to the identity and to zero."""
    was_training = layer.training
    layer.eval()
    try:
        eye = torch.eye(in_features, dtype=weight.dtype, device=weight.device)  # [in, in]
        with torch.autocast(device_type=weight.device.type, enabled=False):
            out = layer(eye) - layer(torch.zeros(1, in_features, dtype=weight.dtype, device=weight.device))  # [in, out]
    finally:
        layer.train(was_training)
    return out.T.contiguous()


def _tuner_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Modules that wrap a ``base_layer`` (PEFT tuner layers), by canonical weight name."""
    found = {}
    for mname, module in model.named_modules():
        base = getattr(module, "base_layer", None)
        if isinstance(base, nn.Module) and hasattr(base, "weight") and getattr(base.weight, "ndim", 0) == 2:
            found[canonical_name(f"{mname}.base_layer.weight")] = module
    return found


def owner_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Map each parameter name to the module that owns it."""
    owners = {}
    for mname, module in model.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            owners[f"{mname}.{pname}" if mname else pname] = module
    return owners


def weight_matrices(
    model: nn.Module,
    include: str | Callable[[str], bool] | None = None,
    exclude: str | Callable[[str], bool] | None = None,
    embeddings: bool = True,
) -> dict[str, torch.Tensor]:
    """All 2-D weight matrices of ``model`` as detached ``[out, in]`` tensors, by canonical name.

    Parameters
    ----------
    model : the model; a PEFT ``PeftModel`` is analysed through its effective weights.
    include, exclude : a regular expression (searched in the name) or a predicate on names.
    embeddings : keep ``nn.Embedding`` tables (``[vocab, d_model]``).

    Returns
    -------
    dict name → tensor on the model's device in the parameter's dtype. Tensors may share storage with
    the model: clone before modifying.
    """
    inc = _as_predicate(include, default=True)
    exc = _as_predicate(exclude, default=False)
    owners = owner_modules(model)
    tuners = _tuner_layers(model)
    out: dict[str, torch.Tensor] = {}
    for raw, param in model.named_parameters():
        if param.ndim != 2 or _is_adapter_param(raw):
            continue
        name = canonical_name(raw)
        if name in out or not inc(name) or exc(name):
            continue
        owner = owners.get(raw)
        if isinstance(owner, nn.Embedding) and not embeddings:
            continue
        if owner is not None and hasattr(owner, "workbench_effective_weight"):
            w = owner.workbench_effective_weight()
        elif name in tuners and not isinstance(owner, nn.Embedding):
            in_features = param.shape[0] if is_conv1d(owner) else param.shape[1]
            w = _probe_linear(tuners[name], in_features, param)
        elif owner is not None and is_conv1d(owner):
            w = param.detach().T
        else:
            w = param.detach()
        out[name] = w
    return out


def _as_predicate(spec, default: bool) -> Callable[[str], bool]:
    if spec is None:
        return lambda name: default
    if callable(spec):
        return spec
    pattern = re.compile(spec)
    return lambda name: bool(pattern.search(name))


def fingerprint(model: nn.Module) -> dict[str, list[int]]:
    """Parameter names and shapes: what a checkpoint checks before loading into a model."""
    return {name: list(p.shape) for name, p in model.named_parameters()}


def iter_matrices(models: Iterable[nn.Module], **kw):
    """Yield ``weight_matrices`` of several models (helper for comparisons)."""
    for m in models:
        yield weight_matrices(m, **kw)
