"""``FineTune``: a :class:`workbench.Run` that fine-tunes a pre-trained base — fully, with PEFT LoRA, or LoRA-SB.

>>> from workbench.finetune import FineTune, pretrained_base
>>> ft = FineTune(pretrained_base("gpt2-1m"), "recipes", method="lora", rank=8, init="pissa",
...               max_steps=100)                                                    # doctest: +SKIP
>>> ft.run()                                                                        # doctest: +SKIP
>>> ft.record[["loss", "val_loss", "pretrain_loss"]]    # task loss and forgetting  # doctest: +SKIP
>>> ft.delta_summary()                                  # ΔW = W − W0 per matrix    # doctest: +SKIP

What it adds to :class:`~workbench.Run`:

* **The reference W0 is snapshotted from the base before PEFT rewrites it** (PiSSA, OLoRA, CorDA and
  LoRA-GA set the base to ``W0 − s·B0A0``), so every ΔW, spectrum and intruder count compares with the
  true pre-trained weights.
* **Forgetting**: the held-out split of the pre-training corpus (``forget_eval``, ``stories`` by default)
  is evaluated with the task's ``val`` split at every eval, logged as ``pretrain_loss``.
* **Live intruders**: a :class:`workbench.spectra.SpectraProbe` (every ``intruders_every`` steps) and a
  :class:`~workbench.finetune.delta.DeltaProbe` on the targeted matrices record intruder counts, effective
  ranks and ΔW per matrix into the record.
* Every bad setting raises a :class:`~workbench.errors.ConfigError` before the model is modified.

The adapter is built once, in the constructor, from the declared parameters; to change ``method``,
``rank``, ``init``… build a new ``FineTune`` from the same base (``base`` is not modified by ``full``
only; PEFT wraps and may rewrite it — pass a copy if you need it again, :func:`fresh_copy`).
"""

from __future__ import annotations

import copy
import re
import time

import param
from torch import nn

from .. import data as data_mod
from .. import devices
from ..data.base import Dataset, Split, to_device
from ..errors import ConfigError
from ..optim import OPTIMIZERS, build_optimizer
from ..rng import seeded
from ..run import Run
from ..snapshot import Snapshot
from .delta import DeltaProbe, delta_summary
from .inits import LORA_INITS
from .lora_sb import lora_sb_layers, merge_lora_sb
from .methods import METHODS, Method


def fresh_copy(model: nn.Module) -> nn.Module:
    """A deep copy of a base model (keeps ``workbench_origin``): fine-tune several methods from one base."""
    out = copy.deepcopy(model)
    out.workbench_origin = dict(getattr(model, "workbench_origin", {}) or {})
    return out


class FineTune(Run):
    """Fine-tune ``model`` on ``data``: ``method`` = full | lora (PEFT) | lora_sb.

    Parameters
    ----------
    model : a pre-trained ``nn.Module``; a preset name (pre-trained on ``stories`` and cached, see
        :func:`~workbench.finetune.pretrained_base`); or a local model folder / HF hub id.
    data : the fine-tuning dataset (name, path or :class:`~workbench.data.Dataset`), e.g. ``"recipes"``.
    forget_data : the pre-training distribution's held-out data (``Dataset`` → its ``val`` split, or a
        ``Split``); default: ``forget_eval`` loaded with the fine-tuning data's block size.
    evals, probes, reference, parent : as for :class:`~workbench.Run` (``reference`` defaults to W0 of the base).
    **params : the declared parameters below and every :class:`~workbench.Run` parameter.
    """

    method = param.Selector(default="lora", objects=METHODS.names(),
                            doc="full: every weight trains; lora: PEFT LoRA; lora_sb: B·R·A with trainable r×r R; "
                                "miss, fourierft, vera, adalora: PEFT's (see finetune.methods).")
    method_params = param.Dict(default={}, doc="The method's own parameters (e.g. n_frequency for fourierft, variant "
                                               "for miss); keywords such as FineTune(..., n_frequency=64) go here.")
    loraplus_lr_ratio = param.Number(default=16.0, bounds=(1, None), doc="optimizer='loraplus': lr of B / lr of A.")
    rank = param.Integer(default=8, softbounds=(1, 256), doc="LoRA rank r (≤ the smallest targeted matrix dimension).")
    alpha = param.Number(default=16.0, softbounds=(0.5, 256), doc="LoRA alpha; scale s = alpha/r (alpha/√r with rsLoRA).")
    target_modules = param.Parameter(default=None, doc="Module names (list), a regex over full names, 'all-linear', "
                                                       "or None for the family's attention+MLP projections.")
    dropout = param.Number(default=0.0, bounds=(0, 1), inclusive_bounds=(True, False), doc="Dropout on the adapter input.")
    use_rslora = param.Boolean(default=False, doc="Rank-stabilized scaling alpha/√r.")
    use_dora = param.Boolean(default=False, doc="DoRA: learn the magnitude of each weight column separately.")
    init = param.Selector(default="default", check_on_set=False,
                          objects=[n.replace("_k", "_4") if n == "pissa_niter_k" else n for n in LORA_INITS.names()],
                          doc="LoRA init (PEFT init_lora_weights); pissa_niter_<k> takes any k. Ignored by full/lora_sb.")
    init_batches = param.Integer(default=4, bounds=(0, None), doc="Training batches used by data-driven inits "
                                                                   "(EVA, CorDA, LoRA-GA, LoRA-SB).")
    sb_start = param.Selector(default="zero", objects=["zero", "first_step"],
                              doc="LoRA-SB: R0 = 0 (no-op) or the rank-r projection of one SGD step of size lr.")
    forget_eval = param.String(default="stories", doc="Pre-training dataset whose held-out loss measures forgetting "
                                                      "(logged as pretrain_loss); '' turns it off.")
    intruders_every = param.Integer(default=50, bounds=(0, None), doc="Measure intruders and ΔW every this many "
                                                                      "steps (0 = off).")
    intruder_k = param.Integer(default=10, bounds=(1, None), doc="Top-k singular vectors checked for intruders.")
    intruder_eps = param.Number(default=0.5, bounds=(0, 1), doc="Intruder threshold on max |cos| with W0's vectors.")

    ADAPTER_PARAMS = ("method", "method_params", "rank", "alpha", "target_modules", "dropout", "use_rslora", "use_dora",
                      "init", "init_batches", "sb_start", "loraplus_lr_ratio")

    def __init__(self, model: nn.Module | str, data: Dataset | str, evals: dict | None = None, probes=(),
                 reference: Snapshot | None = None, parent: str | None = None,
                 forget_data: Dataset | Split | None = None, **params):
        data = data_mod.load(data) if isinstance(data, str) else data
        if isinstance(model, str):
            from .pretrain import pretrained_base

            model = pretrained_base(model)
        evals = dict(evals or {})
        forget = self._forget_split(forget_data, params.get("forget_eval", type(self).forget_eval), data)
        if forget is not None and "pretrain" not in evals:
            evals["pretrain"] = forget
        params, method = self._method_from(params)
        # Run.__init__ validates every declared parameter and modifies nothing.
        super().__init__(model, data, evals=evals, probes=(), reference=None, parent=parent,
                         method_params=method.hyperparameters(), **params)
        base = self.model
        #: the method object (``METHODS[method]`` with ``method_params``): builds and drives the adapter.
        self.method_object = method
        self.targets = method.check(self, base)
        self._check_optimizer()
        #: canonical matrix names of the targeted modules (what intruders/ΔW are measured on; same for full FT).
        self.target_matrices = [f"{name}.weight" for name in self.targets]
        device = devices.resolve_device(self.device)
        base.to(device)
        # W0 BEFORE PEFT rewrites anything.
        self.reference = reference if reference is not None else Snapshot.from_model(base)
        batches = [to_device(self.data.train.batch_at(i, self.batch_size, self.seed), device)
                   for i in range(self.init_batches)]
        t0 = time.perf_counter()
        # Adapter init (Kaiming/Gaussian A, EVA/PiSSA randomness) is seeded by `seed`, not the global RNG state.
        with seeded(self.seed, devices=[device] if device.type == "cuda" else []):
            self.model = method.build(self, base, self.targets, batches)
        #: seconds spent building the adapter (SVDs, gradient / calibration passes of data-driven inits).
        self.init_seconds = time.perf_counter() - t0
        method.attach(self)  # before the probes: they see what the method's step hooks left
        if self.intruders_every > 0:
            self.add_probe(self._spectra_probe())
            self.add_probe(DeltaProbe(self.target_matrices, every=self.intruders_every))
        for probe in probes:
            self.add_probe(probe)

    # ------------------------------------------------------------------ method and optimizer
    @classmethod
    def _method_from(cls, params: dict) -> tuple[dict, Method]:
        """Split ``params`` into the stage's and the method's, and build the checked method object."""
        params = dict(params)
        name = params.get("method", cls.param["method"].default)
        mcls = METHODS.entry(name).obj  # NotFoundError with close matches for an unknown name
        given = params.pop("method_params", None) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"method_params must be a dict of method {name!r}'s parameters "
                              f"({mcls.hyperparameter_names() or 'it has none'}), got {type(given).__name__}.")
        routed = {}
        for k in [k for k in params if k not in cls.param]:
            if k in mcls.hyperparameter_names():
                routed[k] = params.pop(k)
                continue
            having = [n for n in METHODS.names() if k in METHODS.get(n).hyperparameter_names()]
            if having:
                raise ConfigError(f"{k!r} is a parameter of method {having}, not of {name!r} (whose parameters are "
                                  f"{mcls.hyperparameter_names() or 'none'}); remove it or set method={having[0]!r}.")
        return params, mcls.checked(**{**given, **routed})

    def _check_optimizer(self) -> None:
        """LoRA-FA / LoRA+ group LoRA's A and B by name: only for PEFT LoRA (checked before the model is touched)."""
        if not OPTIMIZERS.entry(self.optimizer).meta.get("needs_model"):
            return
        if self.method != "lora":
            raise ConfigError(f"optimizer={self.optimizer!r} works on PEFT LoRA's A and B matrices; method "
                              f"{self.method!r} has none. Use method='lora', or optimizer='adamw'.")
        if self.optimizer == "lora_fa" and (self.use_dora or self.init == "mica"):
            raise ConfigError("optimizer='lora_fa' freezes A and trains B only: it does not combine with DoRA's "
                              "magnitudes nor with init='mica' (which freezes B). Use init='default' without DoRA.")

    def build_torch_optimizer(self, **settings):
        """As :meth:`Run.build_torch_optimizer`; LoRA-FA / LoRA+ are built by PEFT's constructors from the model."""
        name = settings.get("optimizer", self.optimizer)
        if not OPTIMIZERS.entry(name).meta.get("needs_model"):
            return super().build_torch_optimizer(**settings)
        self._check_optimizer()
        s = {k: settings.get(k, getattr(self, k)) for k in ("lr", "weight_decay", "momentum")}
        return build_optimizer(name, (), s["lr"], s["weight_decay"], s["momentum"], model=self.model, rank=self.rank,
                               alpha=self.alpha, loraplus_lr_ratio=self.loraplus_lr_ratio)

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _forget_split(forget_data, forget_eval: str, data: Dataset) -> Split | None:
        if forget_data is not None:
            if isinstance(forget_data, Dataset):
                return forget_data.split("val")
            if isinstance(forget_data, Split):
                return forget_data
            raise ConfigError(f"forget_data must be a Dataset or a Split, got {type(forget_data).__name__}.")
        if not forget_eval:
            return None
        opts = dict(data.info.get("options") or {})
        kw = {"block_size": opts["block_size"]} if "block_size" in opts else {}
        if data.tokenizer is not None:
            kw["tokenizer"] = data.tokenizer
        try:
            ds = data_mod.load(forget_eval, n_docs=1, n_val_docs=200, **kw)
        except ConfigError:  # not a built-in corpus (a file): load it as is
            ds = data_mod.load(forget_eval, **({"tokenizer": data.tokenizer} if data.tokenizer is not None else {}))
        if "val" not in ds.splits:
            raise ConfigError(f"forget_eval {forget_eval!r} has no 'val' split to measure forgetting on; "
                              f"its splits are {list(ds.splits)}.")
        return ds.split("val")

    def _spectra_probe(self):
        try:
            from ..spectra import SpectraProbe
        except ImportError as exc:
            raise ConfigError(f"Live intruders need workbench.spectra ({exc}); set intruders_every=0 to train "
                              "without them.") from None
        pattern = "^(" + "|".join(re.escape(n) for n in self.target_matrices) + ")$"
        return SpectraProbe(every=self.intruders_every, k=self.intruder_k, eps=self.intruder_eps, include=pattern)

    # ------------------------------------------------------------------ results
    def scaling(self) -> float:
        """The adapter's output scale (LoRA's s; FourierFT's scaling; 1.0 for full fine-tuning, MiSS, VeRA)."""
        return self.method_object.scaling(self)

    def delta_summary(self):
        """Per-matrix norm and effective rank of ΔW = W − W0 over the targeted matrices (``xr.Dataset``)."""
        return delta_summary(self.model, self.reference, self.target_matrices)

    def describe_model(self) -> dict:
        desc = super().describe_model()
        desc["finetune"] = {"method": self.method, "method_params": self.method_object.hyperparameters(),
                            "targets": len(self.targets), "scaling": self.scaling(),
                            "init_seconds": round(self.init_seconds, 4)}
        return desc

    # ------------------------------------------------------------------ method state in checkpoints
    def state_dict(self) -> dict:
        """The run's state plus the method's own outside model and optimizer (AdaLoRA's budget): a bit-identical resume."""
        state = super().state_dict()
        state["method"] = self.method_object.extra_state(self)
        return state

    def load_state_dict(self, state: dict) -> None:
        method_state = state.get("method", {})
        if not isinstance(method_state, dict):
            from ..run_state import damaged

            raise damaged("method", f"expected a dict, got {type(method_state).__name__}")
        super().load_state_dict(state)
        self.method_object.load_extra_state(self, method_state)


def merged(run_or_model, copy_model: bool = True) -> nn.Module:
    """A plain model whose weights are the effective fine-tuned weights (PEFT ``merge_and_unload``, LoRA-SB merged).

    By default the run's model is deep-copied first, so the run can keep training.
    """
    model = run_or_model.model if isinstance(run_or_model, Run) else run_or_model
    model = fresh_copy(model) if copy_model else model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if lora_sb_layers(model):
        model = merge_lora_sb(model)
    return model
