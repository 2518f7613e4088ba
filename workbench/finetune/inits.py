"""LoRA initializations: every ``init_lora_weights`` of PEFT 0.21 that works offline, as data.

=================  =====================  ==========  ==========  ============  =========================
name               PEFT value             needs data  no-op       rewrites W0   notes
=================  =====================  ==========  ==========  ============  =========================
default            ``True``               no          yes         no            A Kaiming-uniform, B = 0
gaussian           ``"gaussian"``         no          yes         no            A ~ N(0, 1/r), B = 0
pissa              ``"pissa"``            no          yes         yes           top-r SVD of W0 (full SVD)
pissa_niter_<k>    ``"pissa_niter_<k>"``  no          yes         yes           fast randomized SVD, k iters
olora              ``"olora"``            no          yes         yes           QR of W0; not GPT-2 Conv1D
orthogonal         ``"orthogonal"``       no          yes         no            B, A from orthogonal rows;
                                                                                B₀A₀ = 0, even rank only
eva                ``"eva"``              yes         yes         no            SVD of layer inputs; ranks
                                                                                redistributed (rho)
corda              ``"corda"``            yes (bs 1)  yes         yes           context-oriented SVD (IPM)
lora_ga            ``"lora_ga"``          yes         yes         yes           SVD of the full gradient
mica               ``"mica"``             no          yes         no            B = W0's r minor left singular
                                                                                vectors, frozen; A = 0 trains
=================  =====================  ==========  ==========  ============  =========================

"no-op" means the adapted model computes the same function as the base at step 0. For the inits that
rewrite the base to ``W0 − s·B0A0``, PEFT's ``get_delta_weight()`` is *not* the update; the workbench
measures ΔW against the snapshot of W0 taken before PEFT touched the model (see :mod:`.delta`).
``orthogonal`` sets both A and B non-zero, yet B0A0 = 0 exactly (A and B are built from disjoint rows of
one orthogonal r×r matrix), so it is a no-op too; every init in this table gives ΔW = 0 at step 0 (tested).

Each entry's ``meta`` is what the init panel lists; ``resolve(name)`` accepts ``pissa_niter_<k>``.

>>> resolve("pissa_niter_4").name, resolve("pissa_niter_4").meta["peft_value"]
('pissa_niter_k', 'pissa_niter_4')
>>> resolve("default").meta["peft_value"]
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..errors import ConfigError
from ..registry import Registry

LORA_INITS = Registry("LoRA init", hint="Pass one of these as FineTune(init=...); 'pissa_niter_<k>' takes any k ≥ 0.")


@dataclass(frozen=True)
class InitSpec:
    """What the fine-tuning stage needs to know about one init."""

    peft_value: object            # the value passed as LoraConfig(init_lora_weights=...)
    needs_data: bool = False      # a data-driven preprocessing pass (EVA, CorDA, LoRA-GA)
    batch_size_one: bool = False  # calibration forward passes one example at a time (CorDA)
    conv1d: bool = True           # works on GPT-2's Conv1D layers
    even_rank: bool = False       # needs an even rank (orthogonal)
    noop: bool = True             # the adapted model equals the base at step 0
    rewrites_base: bool = False   # PEFT rewrites the base weight to W0 − s·B0A0


def _add(name, help, **spec):
    LORA_INITS.register(name, InitSpec(**spec), help=help, **{k: v for k, v in spec.items()})


_add("default", "Kaiming-uniform A, zero B (Microsoft's reference LoRA)", peft_value=True)
_add("gaussian", "Gaussian A with std 1/r, zero B", peft_value="gaussian")
_add("pissa", "PiSSA: A, B from the top-r singular triplets of W0; base keeps the residual", peft_value="pissa",
     rewrites_base=True)
_add("pissa_niter_k", "PiSSA with a fast randomized SVD of k subspace iterations (pass pissa_niter_<k>)",
     peft_value="pissa_niter_4", rewrites_base=True)
_add("olora", "OLoRA: A, B from the QR decomposition of W0; base keeps the residual", peft_value="olora",
     conv1d=False, rewrites_base=True)
_add("orthogonal", "A and B from disjoint rows of one orthogonal matrix (B0A0 = 0); even rank",
     peft_value="orthogonal", even_rank=True)
_add("eva", "EVA: A from the SVD of layer inputs on data, B = 0, ranks redistributed", peft_value="eva",
     needs_data=True)
_add("corda", "CorDA: context-oriented SVD of W0·C (input covariance from data); base keeps the residual",
     peft_value="corda", needs_data=True, batch_size_one=True, rewrites_base=True)
_add("lora_ga", "LoRA-GA: A, B from the SVD of the full gradient on data; base keeps the residual",
     peft_value="lora_ga", needs_data=True, rewrites_base=True)
_add("mica", "MiCA: B = the r left singular vectors of W0 with the smallest singular values (frozen), A = 0 trains",
     peft_value="mica")

_NITER = re.compile(r"^pissa_niter_(\d+)$")


@dataclass(frozen=True)
class Resolved:
    name: str     # registry name
    meta: dict    # InitSpec fields, with peft_value resolved
    spec: InitSpec


def resolve(name: str) -> Resolved:
    """The registry entry for ``name`` (``pissa_niter_<k>`` maps to ``pissa_niter_k`` with that k)."""
    if isinstance(name, bool):
        name = "default" if name else "false"
    if not isinstance(name, str):
        raise ConfigError(f"init must be a string naming a LoRA init, got {type(name).__name__} {name!r}. "
                          f"Known: {', '.join(LORA_INITS.names())}.")
    m = _NITER.match(name)
    if m:
        spec = replace(LORA_INITS.get("pissa_niter_k"), peft_value=name)
        return Resolved("pissa_niter_k", vars(spec).copy(), spec)
    if name == "pissa_niter_k" or name.startswith("pissa_niter"):
        raise ConfigError(f"init {name!r}: write the number of subspace iterations, e.g. 'pissa_niter_4'.")
    spec = LORA_INITS.get(name)  # NotFoundError listing the known names
    return Resolved(name, vars(spec).copy(), spec)


def table() -> list[dict]:
    """One row per init (name, help, needs_data, no-op, …): what the init panel lists."""
    return LORA_INITS.table()
