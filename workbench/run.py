"""The Run stage: a training run you can step, run, start in the background, stop, save and resume.

>>> from workbench import Run
>>> run = Run("gpt2-1m", "stories", max_steps=20, batch_size=8, log_every=5)   # doctest: +SKIP
>>> run.step()                # one optimizer step (blocking)                      # doctest: +SKIP
>>> run.run(10)               # ten more, with a tqdm bar                          # doctest: +SKIP
>>> run.start(); run.stop()   # background thread, cooperative stop at a step boundary  # doctest: +SKIP
>>> run.record                # labelled xarray.Dataset over `step`                # doctest: +SKIP

Design:
* Declared parameters are the widget controls, the papermill parameters and the saved config.
  ``LOCKED_WHILE_TRAINING`` ones (optimizer, weight_decay, momentum, batch_size, seed, device,
  autocast, grad_accum_steps, activation_checkpointing, compile, strategy) cannot change while ``running``; the others (lr, schedule, max_steps, grad_clip, eval_every…)
  apply from the next step, and the per-step ``lr`` in the history records what was used.
* ``running`` is the one answer to "is it training?" (see :mod:`workbench.loop`); ``status`` is the
  outcome. Read-only state (``loss``, ``steps_per_sec``, ``last_logged_step``) is ``constant`` and
  *published* only at log frequency, so a watcher never slows the hot loop; ``run.global_step`` is exact.
* Every step appends a row (``loss``, ``lr``, ``grad_norm``, task metrics, ``wall_time`` = seconds spent
  in steps since the first one, continued across resumes) to ``run.history``; probes add their own.
  Views poll the history; the training thread never touches a UI.
* Batch ``i`` is a pure function of ``(seed, i)`` and the run draws from its own random streams
  (``run.rng``, :mod:`workbench.rng`), so checkpoint → resume is bit-identical, and concurrent runs
  in one process draw exactly what they would alone.
* ``state_dict()``/``load_state_dict()`` hold the whole run (all or nothing); checkpoints are files of it.
* Subclasses change what a step computes by overriding ``forward_backward`` (SAM, unlearning losses).
* ``batch_size`` is the step's global batch: ``grad_accum_steps`` cuts it into micro-batches
  (:mod:`workbench.accumulate`), ``strategy="ddp"``/``"fsdp"`` shards it over processes
  (:mod:`workbench.distributed`, :mod:`workbench.fsdp`); the loss goes through ``run.forward_model``
  (compiled / DDP-wrapped, :mod:`workbench.execution`; under FSDP ``run.model`` itself is sharded).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

import param
import torch
from torch import nn
from tqdm.auto import tqdm

from . import accumulate, devices, distributed, execution, fsdp, run_state
from .data.base import Dataset, to_device
from .display import Displayable
from .errors import ConfigError, DivergedError
from .events import Callbacks
from .history import History
from .loop import STATUSES, Loop  # noqa: F401  (STATUSES: re-exported)
from .optim import OPTIMIZERS, SCHEDULES, build_optimizer, lr_factor
from .probes import EvalLoss, Probe, create as create_probe
from .record import new_run_id
from .rng import RunRNG
from .run_files import RunFiles
from .run_parallel import RunParallel
from .snapshot import Snapshot


class Run(RunParallel, RunFiles, Displayable, Loop):
    """A training run over ``model`` and ``data``.

    Parameters
    ----------
    model : ``nn.Module``, a preset name (``"gpt2-1m"``) or a local model directory.
    data : :class:`workbench.data.Dataset`, or a dataset name / local file path.
    evals : extra held-out splits ``{label: Split}`` evaluated every ``eval_every`` steps (``<label>_loss``).
    probes : probes to attach.
    reference : the W0 snapshot; taken from the model when the run is set up if not given.
    **params : any declared parameter below.
    """

    # --- optimization ---------------------------------------------------------------------------
    optimizer = param.Selector(default="adamw", objects=OPTIMIZERS.names(), doc="Optimizer.")
    lr = param.Number(default=1e-3, bounds=(0, None), inclusive_bounds=(False, True), doc="Peak learning rate (> 0).")
    weight_decay = param.Number(default=0.0, bounds=(0, None), doc="Weight decay (decoupled for AdamW).")
    momentum = param.Number(default=0.9, bounds=(0, 1), doc="SGD momentum (SGD only).")
    schedule = param.Selector(default="constant", objects=SCHEDULES.names(), doc="Learning-rate schedule.")
    warmup_steps = param.Integer(default=0, bounds=(0, None), doc="Linear warmup steps.")
    decay_fraction = param.Number(default=0.2, bounds=(0, 1), doc="WSD: fraction of max_steps spent decaying.")
    min_lr_ratio = param.Number(default=0.0, bounds=(0, 1), doc="Final lr as a fraction of lr (cosine, linear, wsd).")
    grad_clip = param.Number(default=1.0, bounds=(0, None), doc="Clip the global gradient norm to this (0 = off).")
    # --- data and length ------------------------------------------------------------------------
    batch_size = param.Integer(default=16, bounds=(1, None), doc="Examples per step.")
    max_steps = param.Integer(default=200, bounds=(1, None), doc="Length of run() without an argument; schedules end here.")
    seed = param.Integer(default=0, doc="Seeds the data order and the run's torch RNG stream.")
    # --- hardware -------------------------------------------------------------------------------
    device = param.Selector(default="auto", objects=list(devices.DEVICES), check_on_set=False,
                            doc="'auto' (CUDA if present), 'cpu', 'cuda' or 'cuda:N'.")
    autocast = param.Selector(default="auto", objects=list(devices.AUTOCAST), doc="'auto' = bf16 on CUDA, off on CPU.")
    grad_accum_steps = param.Integer(default=1, bounds=(1, None),
                                     doc="Micro-batches per optimizer step (batch_size is the whole step's batch; "
                                         "the gradient is the same as one batch of batch_size).")
    activation_checkpointing = param.Boolean(default=False, doc="Recompute activations in backward (HF models): less "
                                                                "memory, ~30% more compute.")
    compile = param.Boolean(default=False, doc="Run the model through torch.compile (first steps compile; slow start).")
    # precedence -1: no widget control (a notebook or dashboard cannot launch processes; the CLI does)
    strategy = param.Selector(default="single", objects=list(distributed.STRATEGIES), precedence=-1,
                              doc="'single' (one process), 'ddp' (data parallel) or 'fsdp' (sharded data parallel); "
                                  "launch with workbench train --nproc-per-node N [--strategy fsdp]. batch_size stays "
                                  "the global batch.")
    # --- logging --------------------------------------------------------------------------------
    log_every = param.Integer(default=10, bounds=(1, None), doc="Publish status (and tqdm) every this many steps.")
    eval_every = param.Integer(default=50, bounds=(0, None), doc="Evaluate held-out splits every this many steps (0 = off).")
    eval_batches = param.Integer(default=4, bounds=(1, None), doc="Batches per held-out split per evaluation.")
    label = param.String(default="", doc="A label for this run in plots and records.")
    # --- published state (read-only) ------------------------------------------------------------
    loss = param.Number(default=None, allow_None=True, constant=True, doc="Training loss at the last publish.")
    steps_per_sec = param.Number(default=None, allow_None=True, constant=True, doc="Throughput at the last publish.")
    last_logged_step = param.Integer(default=0, constant=True, doc="global_step at the last publish.")

    STATE_PARAMS = ("status", "running", "loss", "steps_per_sec", "last_logged_step", "message", "name")
    #: declared parameters that cannot change while ``running`` (setting one raises ConfigError "stop() first");
    #: a view disables their controls while training. While stopped, a change takes effect at the next step.
    LOCKED_WHILE_TRAINING = ("optimizer", "weight_decay", "momentum", "batch_size", "seed", "device", "autocast",
                             "grad_accum_steps", "activation_checkpointing", "compile", "strategy")
    LOCK_REASONS = {"optimizer": "the optimizer and its state were built with it",
                     "weight_decay": "the optimizer was built with it", "momentum": "the optimizer was built with it",
                     "batch_size": "every batch of this loop is drawn with it", "device": "the model and optimizer live there",
                     "seed": "it fixes the data order and the run's random stream", "autocast": "the loop runs under it",
                     "grad_accum_steps": "every step of this loop is cut into that many micro-batches",
                     "activation_checkpointing": "the model's forward pass is set up with it",
                     "compile": "the loop runs the compiled (or plain) model",
                     "strategy": "the processes and the model's wrapping are set up for it"}
    #: declared parameters that ``load_state_dict`` keeps from this run (where it runs, not what it is)
    NOT_RESTORED = ("device", "strategy")

    def __init__(self, model: nn.Module | str, data: Dataset | str, evals: dict | None = None,
                 probes: tuple[Probe, ...] | list[Probe] = (), reference: Snapshot | None = None,
                 parent: str | None = None, **params):
        super().__init__(**params)
        from . import data as data_mod, models as models_mod

        devices.resolve_device(self.device)  # fail now, not at the first step, on a device this machine lacks
        devices.autocast_dtype(self.autocast, torch.device("cpu"))

        self.data: Dataset = data_mod.load(data) if isinstance(data, str) else data
        if not isinstance(self.data, Dataset):
            raise ConfigError(f"data must be a workbench Dataset or a dataset name/path, got {type(data).__name__}.")
        if isinstance(model, str):
            model = models_mod.get(model, data=self.data)
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, a preset name or a model directory, got {type(model).__name__}.")
        run_state.check_positions(model, self.data)
        execution.check_checkpointing(model, self.activation_checkpointing)
        execution.check_compile(self.compile)
        accumulate.check(self.batch_size, self.grad_accum_steps)
        self._check_strategy()
        self.model: nn.Module = model
        self.history = History()
        self.callbacks = Callbacks()
        self.reference = reference
        self.run_id = new_run_id()
        origin = getattr(model, "workbench_origin", {}) or {}
        self.parent = parent or origin.get("run_id")
        self.probes: list[Probe] = []
        #: the run's own random streams (torch CPU/CUDA, Python, NumPy): see :mod:`workbench.rng`
        self.rng = RunRNG(self.seed)
        self._step = 0
        self._elapsed = 0.0  # seconds spent in steps: the history's wall_time
        self._optim: torch.optim.Optimizer | None = None
        self._device: torch.device | None = None
        self._amp_dtype = None
        self._forward: nn.Module | None = None  # what a step runs forward through (execution.training_module)
        self._lock = threading.RLock()
        self._window = (time.perf_counter(), 0)
        evals = dict(evals or {})
        if "val" in self.data.splits and "val" not in evals:
            evals = {"val": self.data.splits["val"], **evals}
        self.evals = evals
        self._eval_probe: EvalLoss | None = None
        self._eval_settings_changed()
        for probe in probes:
            self.add_probe(probe)

    # ------------------------------------------------------------------ properties
    @property
    def global_step(self) -> int:
        """Optimizer steps taken so far (exact; also the record's latest ``step``)."""
        return self._step

    @property
    def torch_device(self) -> torch.device:
        """The resolved ``torch.device`` (``run.device`` is the declared string, e.g. ``"auto"``)."""
        return self._device or devices.resolve_device(self.device)

    def autocast_ctx(self):
        """The autocast context this run trains under (``run.autocast`` is the declared mode)."""
        dev = self.torch_device
        return devices.autocast_context(dev, devices.autocast_dtype(self.autocast, dev))

    @property
    def forward_model(self) -> nn.Module:
        """The module a training step computes the loss through: ``model`` itself, or it compiled / DDP-wrapped
        (:mod:`workbench.execution`; the wrappers share ``model``'s parameters)."""
        return self._forward or self.model

    @property
    def torch_optimizer(self) -> torch.optim.Optimizer | None:
        """The torch optimizer (built at setup; ``run.optimizer`` is the declared name)."""
        return self._optim

    def config(self) -> dict:
        """The declared, editable parameters (what papermill passes and records store)."""
        vals = self.param.values()
        return {k: v for k, v in vals.items() if k not in self.STATE_PARAMS}

    def config_values(self, config: dict) -> dict:
        """Parameter values for a saved ``config()`` (its inverse); subclasses rebuild what they saved as plain data."""
        return dict(config)

    # ------------------------------------------------------------------ callbacks
    def add_callback(self, event: str, fn: Callable, name: str | None = None, order: float = 0):
        """Attach ``fn(run, **context)`` to ``event``; lower ``order`` runs first (probes: 100). See :mod:`workbench.events`."""
        return self.callbacks.add(event, fn, name, order)

    def add_probe(self, probe: Probe | str, **params) -> Probe:
        """Attach a probe (or build one by its ``PROBES`` name: ``add_probe("spectra", every=10)``)."""
        if isinstance(probe, str):
            probe = create_probe(probe, **params)
        elif params:
            raise ConfigError("add_probe(probe, **params): parameters are for a probe given by name; set them on the probe.")
        if not isinstance(probe, Probe):
            raise ConfigError(f"add_probe expects a workbench Probe or a probe name, got {type(probe).__name__}.")
        self.probes.append(probe)
        return probe.attach(self)

    def remove_probe(self, probe: Probe) -> None:
        self.callbacks.remove(probe)
        self.probes = [p for p in self.probes if p is not probe]

    def show_loop(self) -> str:
        """Print (and return) what is attached at each event of the training loop, in running order."""
        text = self.callbacks.show()
        print(text)
        return text

    # ------------------------------------------------------------------ settings that take effect when stopped
    @param.depends("optimizer", "weight_decay", "momentum", watch=True)
    def _optimizer_settings_changed(self):
        self._optim = None  # rebuilt (fresh state) at the next step; refused while training

    @param.depends("seed", watch=True)
    def _seed_changed(self):
        self.rng = RunRNG(self.seed)  # the data order and the random stream follow the seed from the next step

    @param.depends("device", "autocast", watch=True)
    def _hardware_changed(self):
        if self._device is not None:
            self._place(self._resolve_device())
        self._forward = None

    @param.depends("activation_checkpointing", "compile", "strategy", watch=True)
    def _execution_changed(self):
        self._forward = None  # rebuilt at the next step (execution.training_module)

    @param.depends("eval_every", "eval_batches", watch=True)
    def _eval_settings_changed(self):
        probe = self._eval_probe
        if probe is not None and self.eval_every == 0:
            self.remove_probe(probe)
            self._eval_probe = None
        elif probe is not None:
            probe.param.update(every=self.eval_every, max_batches=self.eval_batches)
        elif self.evals and self.eval_every > 0:
            self._eval_probe = EvalLoss(self.evals, every=self.eval_every, max_batches=self.eval_batches,
                                        batch_size=self.batch_size, at_start=self._step == 0)
            self.add_probe(self._eval_probe)

    # ------------------------------------------------------------------ setup
    def _place(self, device: torch.device) -> None:
        """Put the model, reference, optimizer state and RNG stream on ``device``."""
        with self._lock:
            self._device = device
            self._amp_dtype = devices.autocast_dtype(self.autocast, device)
            self.model.to(device)
            self.rng.bind(device)
            if self.reference is not None:
                self.reference = self.reference.to(device)
            if self._optim is not None:  # load_state_dict casts the state to the parameters' device
                self._optim.load_state_dict(self._optim.state_dict())

    def setup(self) -> "Run":
        """Resolve the device, move the model, snapshot W0 and build the optimizer (idempotent).

        Subclasses extend it (``super().setup()`` first); extra modules go to ``self.torch_device``.
        """
        with self._lock:
            if self._device is None:
                self._place(self._resolve_device())
            if self.reference is None:
                self.reference = Snapshot.from_model(self.model)  # before sharding: the full W0
            self._check_strategy()
            if self.strategy == "fsdp" and not fsdp.is_sharded(self.model):  # carries an optimizer's state over
                self._optim = fsdp.shard(self.model, self._optim, self.build_torch_optimizer)
            if self._optim is None:
                self._optim = self.build_torch_optimizer()
            accumulate.check(self.batch_size, self.grad_accum_steps, self._world_size())
            if self._forward is None:
                self._forward = execution.training_module(self.model, self._device, self.activation_checkpointing,
                                                          self.compile, ddp=self._ddp_wrapped())
        return self

    def build_torch_optimizer(self, **settings) -> torch.optim.Optimizer:
        """A fresh torch optimizer over the model as the run's declared settings (or ``settings``) say.

        Used by ``setup()`` and when a state is loaded; subclasses override it for optimizers built from the
        model (LoRA-FA, LoRA+). A param group may carry ``lr_scale``: it trains at that multiple of the lr.
        """
        s = {k: settings.get(k, getattr(self, k)) for k in ("optimizer", "lr", "weight_decay", "momentum")}
        return build_optimizer(s["optimizer"], self.model.parameters(), s["lr"], s["weight_decay"], s["momentum"])

    # ------------------------------------------------------------------ one step
    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of the model on ``batch`` (the dataset's task loss); override for other objectives."""
        return self.data.loss(self.forward_model, batch)

    def forward_backward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Forward, divergence check, backward; leaves gradients in ``.grad``. Override for SAM etc.

        Runs on the run's own random stream (:mod:`workbench.rng`): draw torch randomness freely here.
        """
        with devices.autocast_context(self._device, self._amp_dtype):
            loss, metrics = self.compute_loss(batch)
        self.callbacks.trigger("after_loss", self, loss=loss)
        if not torch.isfinite(loss.detach()).item():
            self._diverged("loss", float(loss.detach()))
        loss.backward()
        return loss.detach(), metrics

    def _batch(self, i: int) -> dict:
        batch = self.data.train.batch_at(i, self.batch_size, self.seed)  # the global batch i, a function of (seed, i)
        if self.strategy != "single":
            batch = distributed.shard(batch)  # this rank's rows r::world
        return to_device(batch, self._device)

    def _step_once(self) -> dict:
        t, t0 = self._step, time.perf_counter()
        batch = self._batch(t)
        lr = self.lr * lr_factor(self.schedule, t, self.max_steps, self.warmup_steps, self.min_lr_ratio, self.decay_fraction)
        opt = self._optim
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.model.train()
        self.callbacks.trigger("before_step", self, batch=batch)
        opt.zero_grad(set_to_none=True)
        with self.rng.active(self._device):
            loss, metrics = accumulate.forward_backward(self, batch, self.grad_accum_steps,
                                                        execution.no_sync(self.forward_model))
        loss, metrics = self._synchronize(loss, metrics)
        self.callbacks.trigger("after_backward", self)
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        max_norm = self.grad_clip if self.grad_clip > 0 else math.inf
        grad_norm = fsdp.plain(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else torch.tensor(0.0)
        if not torch.isfinite(grad_norm).item():
            opt.zero_grad(set_to_none=True)
            self._diverged("gradient norm", float(grad_norm))
        opt.step()
        self._step = t + 1
        self._elapsed += time.perf_counter() - t0
        row = {"loss": float(loss), "lr": lr, "grad_norm": float(grad_norm), **metrics, "wall_time": self._elapsed}
        self.history.log(self._step, **row)
        self.callbacks.trigger("after_step", self, metrics=row)
        return row

    def _diverged(self, what: str, value: float):
        self._optim.zero_grad(set_to_none=True)
        self.history.log(self._step + 1, diverged=1.0)
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all().item()]
        if not bad:
            msg = (f"The {what} became {value} at step {self._step + 1}; the run stopped and the weights were kept at "
                   f"step {self._step}, their last finite values. Lower lr (now {self.lr:g}), enable grad_clip, "
                   f"or use autocast='none'.")
        else:
            msg = (f"The {what} became {value} at step {self._step + 1} because the weights themselves are not finite "
                   f"(NaN/inf in {', '.join(bad[:3])}{' …' if len(bad) > 3 else ''}); the run stopped at step "
                   f"{self._step}. Load a checkpoint or build a new run (then lower lr, now {self.lr:g}, or enable "
                   f"grad_clip).")
        with param.edit_constant(self):
            self.param.update(status="diverged", message=msg)
        self.callbacks.trigger("after_diverge", self, what=what, value=value)
        raise DivergedError(msg)

    # ------------------------------------------------------------------ step and loop (lifecycle: workbench.loop)
    def _published(self, row: dict | None) -> dict:
        now, (t0, s0) = time.perf_counter(), self._window
        sps = (self._step - s0) / (now - t0) if now > t0 and self._step > s0 else self.steps_per_sec
        self._window = (now, self._step)
        values = dict(last_logged_step=self._step, steps_per_sec=sps)
        if row is not None:
            values["loss"] = row["loss"]
        return values

    def step(self) -> dict:
        """Take one optimizer step (blocking) and return its metrics row; ``running`` is True meanwhile."""
        self._claim()
        row, outcome = None, {"status": "idle"}
        try:
            with self._lock:
                self.setup()
                row = self._step_once()
            outcome.update(self._published(row))
        except BaseException as exc:
            outcome["status"] = self._failed(exc)
            raise
        finally:
            self._release(**outcome)
        return row

    def _loop(self, n: int | None, progress: bool) -> None:
        """Train until ``n`` more steps (or ``max_steps``) or ``stop()`` (``run()``/``start()`` call it, running)."""
        with self._lock:
            self.setup()
            target = self._step + n if n is not None else self.max_steps
            self._window = (time.perf_counter(), self._step)
            status, row = "finished", None
            bar = tqdm(total=max(0, target - self._step), disable=not progress, desc=self.label or "train", leave=False)
            try:
                self.callbacks.trigger("before_run", self, target=target)
                while self._step < target:
                    if self.stop_requested:
                        status = "stopped"
                        self.callbacks.trigger("after_cancel", self)
                        break
                    row = self._step_once()
                    bar.update(1)
                    if self._step % self.log_every == 0:
                        bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
                        with param.edit_constant(self):
                            self.param.update(**self._published(row))
            except BaseException as exc:
                status = self._failed(exc)
                raise
            finally:
                bar.close()
                with param.edit_constant(self):
                    self.param.update(status=status, **(self._published(row) if status in ("finished", "stopped") else {}))
                self.callbacks.trigger("after_run", self, status=status)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything that makes this run *this* run at this step: weights, optimizer state, step, random
        streams, history, reference, config, ids. Subclasses add their own keys (``super().state_dict()``).
        Under FSDP a collective (every rank calls it) whose weights and optimizer state are full on rank 0 only."""
        if self.running:
            raise ConfigError("Cannot take the state of a run while it trains; stop() it first (states are taken "
                              "at step boundaries).")
        self.setup()
        return {"step": self._step, "status": self.status, "wall_time": self._elapsed, "config": self.config(),
                "model": fsdp.model_state(self.model), "optimizer": fsdp.optimizer_state(self.model, self._optim),
                "rng": self.rng.state_dict(),
                "history": self.history.state_dict(), "run_id": self.run_id, "parent": self.parent,
                "reference": self.reference.state_dict() if self.reference is not None else None}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output, all or nothing: every section is checked before anything changes.

        A subclass checks its own keys, calls ``super().load_state_dict(state)``, then applies them.
        ``device`` is kept from this run (``NOT_RESTORED``).
        """
        if self.running:
            raise ConfigError("Cannot load a state while the run is training; stop() it first.")
        if fsdp.is_sharded(self.model):
            raise ConfigError("Cannot load a state into a run whose model is already sharded (strategy='fsdp', after "
                              "its first step): load it before the first step, e.g. Run.resume(path, strategy='fsdp').")
        with self._lock:
            if self._device is None:
                self._place(self._resolve_device())
            new = run_state.stage(self, state)
            # --- everything is valid: apply (nothing below can fail on a checked state)
            self.model.load_state_dict(state["model"])
            self.param.update(**new.config)
            self._optim, self.rng, self._step, self._elapsed = new.optimizer, new.rng, new.step, new.wall_time
            self.rng.bind(self._device)
            self.history.replace(new.history)
            if new.reference is not None:
                self.reference = new.reference.to(self._device)
            self.run_id, self.parent = state["run_id"], state.get("parent")
            status = state.get("status", "idle")
            with param.edit_constant(self):
                self.param.update(status="stopped" if status == "running" else status, last_logged_step=self._step,
                                  loss=self.history.latest("loss"), message="")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(label={self.label!r}, step={self._step}, status={self.status!r}, "
                f"model={fsdp.class_name(self.model)}, data={self.data.name!r})")

