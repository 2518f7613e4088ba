"""The Run stage: a training run you can step, run, start in the background, stop, save and resume.

>>> from workbench import Run
>>> run = Run("gpt2-1m", "stories", max_steps=20, batch_size=8, log_every=5)   # doctest: +SKIP
>>> run.step()                # one optimizer step (blocking)                      # doctest: +SKIP
>>> run.run(10)               # ten more, with a tqdm bar                          # doctest: +SKIP
>>> run.start(); run.stop()   # background thread, cooperative stop at a step boundary  # doctest: +SKIP
>>> run.record                # labelled xarray.Dataset over `step`                # doctest: +SKIP

Design:
* Declared parameters are the widget controls, the papermill parameters and the saved config.
  Read-only state (``status``, ``running``, ``loss``, ``steps_per_sec``, ``last_logged_step``) is
  ``constant`` and *published* only at log frequency, so a watcher never slows the hot loop.
  ``run.global_step`` (a plain property) is always exact.
* Every step appends a row (``loss``, ``lr``, ``grad_norm``, task metrics) to ``run.history``; probes
  add their own. Views poll the history; the training thread never touches a UI.
* Batch ``i`` is a pure function of ``(seed, i)`` and the run owns its torch RNG stream (forked around
  each step), so checkpoint → resume is bit-identical on CPU and runs in one process don't interfere.
* Subclasses change what a step computes by overriding ``forward_backward`` (SAM, unlearning losses).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any, Callable

import param
import torch
from torch import nn
from tqdm.auto import tqdm

from . import devices
from .data.base import Dataset, to_device
from .display import Displayable
from .errors import ConfigError, DivergedError
from .events import Callbacks
from .history import History
from .optim import OPTIMIZERS, SCHEDULES, build_optimizer, lr_factor
from .probes import EvalLoss, Probe
from .record import annotate, new_run_id, save as save_record_file
from .snapshot import Snapshot

STATUSES = ("idle", "running", "stopped", "finished", "diverged", "error")


class Run(Displayable, param.Parameterized):
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
    # --- logging --------------------------------------------------------------------------------
    log_every = param.Integer(default=10, bounds=(1, None), doc="Publish status (and tqdm) every this many steps.")
    eval_every = param.Integer(default=50, bounds=(0, None), doc="Evaluate held-out splits every this many steps (0 = off).")
    eval_batches = param.Integer(default=4, bounds=(1, None), doc="Batches per held-out split per evaluation.")
    label = param.String(default="", doc="A label for this run in plots and records.")
    # --- published state (read-only) ------------------------------------------------------------
    status = param.Selector(default="idle", objects=list(STATUSES), constant=True, doc="Run state.")
    running = param.Boolean(default=False, constant=True, doc="True while a run()/start() loop is active.")
    loss = param.Number(default=None, allow_None=True, constant=True, doc="Training loss at the last publish.")
    steps_per_sec = param.Number(default=None, allow_None=True, constant=True, doc="Throughput at the last publish.")
    last_logged_step = param.Integer(default=0, constant=True, doc="global_step at the last publish.")
    message = param.String(default="", constant=True, doc="Last status message (errors, stops).")

    STATE_PARAMS = ("status", "running", "loss", "steps_per_sec", "last_logged_step", "message", "name")

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
        self.model: nn.Module = model
        self.history = History()
        self.callbacks = Callbacks()
        self.reference = reference
        self.run_id = new_run_id()
        origin = getattr(model, "workbench_origin", {}) or {}
        self.parent = parent or origin.get("run_id")
        self.probes: list[Probe] = []
        self.error: BaseException | None = None
        self._step = 0
        self._optim: torch.optim.Optimizer | None = None
        self._device: torch.device | None = None
        self._amp_dtype = None
        self._rng_state: torch.Tensor | None = None
        self._cuda_rng_state: torch.Tensor | None = None
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._window = (time.perf_counter(), 0)
        evals = dict(evals or {})
        if "val" in self.data.splits and "val" not in evals:
            evals = {"val": self.data.splits["val"], **evals}
        self.evals = evals
        self._eval_probe: EvalLoss | None = None
        if evals and self.eval_every > 0:
            self._eval_probe = EvalLoss(evals, every=self.eval_every, max_batches=self.eval_batches,
                                        batch_size=self.batch_size)
            self.add_probe(self._eval_probe)
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
    def torch_optimizer(self) -> torch.optim.Optimizer | None:
        """The torch optimizer (built at setup; ``run.optimizer`` is the declared name)."""
        return self._optim

    def config(self) -> dict:
        """The declared, editable parameters (what papermill passes and records store)."""
        vals = self.param.values()
        return {k: v for k, v in vals.items() if k not in self.STATE_PARAMS}

    # ------------------------------------------------------------------ callbacks
    def add_callback(self, event: str, fn: Callable, name: str | None = None):
        """Attach ``fn(run, **context)`` to ``event`` (see :mod:`workbench.events`)."""
        return self.callbacks.add(event, fn, name)

    def add_probe(self, probe: Probe) -> Probe:
        """Attach a probe; it measures every ``probe.every`` steps into the history."""
        if not isinstance(probe, Probe):
            raise ConfigError(f"add_probe expects a workbench Probe, got {type(probe).__name__}.")
        self.probes.append(probe)
        return probe.attach(self)

    def remove_probe(self, probe: Probe) -> None:
        self.callbacks.remove(probe)
        self.probes = [p for p in self.probes if p is not probe]

    def show_loop(self) -> str:
        """Print (and return) what is attached at each event of the training loop."""
        text = self.callbacks.show()
        print(text)
        return text

    # ------------------------------------------------------------------ setup
    @param.depends("optimizer", "weight_decay", "momentum", watch=True)
    def _invalidate_optimizer(self):
        if self._optim is not None and not self.running:
            self._optim = None  # rebuilt (fresh state) at the next step

    def setup(self) -> "Run":
        """Resolve the device, move the model, snapshot W0 and build the optimizer (idempotent)."""
        with self._lock:
            if self._device is None:
                self._device = devices.resolve_device(self.device)
                self._amp_dtype = devices.autocast_dtype(self.autocast, self._device)
                self.model.to(self._device)
                gen = torch.Generator().manual_seed(int(self.seed))
                self._rng_state = gen.get_state()
                if self._device.type == "cuda":
                    with torch.random.fork_rng(devices=[self._device]):
                        torch.cuda.manual_seed(int(self.seed))
                        self._cuda_rng_state = torch.cuda.get_rng_state(self._device)
            if self.reference is None:
                self.reference = Snapshot.from_model(self.model)
            if self._optim is None:
                self._optim = build_optimizer(self.optimizer, self.model.parameters(), self.lr, self.weight_decay, self.momentum)
        return self

    @contextlib.contextmanager
    def _own_rng(self):
        """Run the body on this run's torch RNG stream (dropout etc.), restoring the global one after."""
        devs = [self._device] if self._device.type == "cuda" else []
        with torch.random.fork_rng(devices=devs):
            torch.set_rng_state(self._rng_state)
            if devs:
                torch.cuda.set_rng_state(self._cuda_rng_state, self._device)
            yield
            self._rng_state = torch.get_rng_state()
            if devs:
                self._cuda_rng_state = torch.cuda.get_rng_state(self._device)

    # ------------------------------------------------------------------ one step
    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of the model on ``batch`` (the dataset's task loss); override for other objectives."""
        return self.data.loss(self.model, batch)

    def forward_backward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Forward, divergence check, backward; leaves gradients in ``.grad``. Override for SAM etc."""
        with devices.autocast_context(self._device, self._amp_dtype):
            loss, metrics = self.compute_loss(batch)
        self.callbacks.trigger("after_loss", self, loss=loss)
        if not torch.isfinite(loss.detach()).item():
            self._diverged("loss", float(loss.detach()))
        loss.backward()
        return loss.detach(), metrics

    def _batch(self, i: int) -> dict:
        return to_device(self.data.train.batch_at(i, self.batch_size, self.seed), self._device)

    def _step_once(self) -> dict:
        t = self._step
        batch = self._batch(t)
        lr = self.lr * lr_factor(self.schedule, t, self.max_steps, self.warmup_steps, self.min_lr_ratio, self.decay_fraction)
        opt = self._optim
        for group in opt.param_groups:
            group["lr"] = lr
        self.model.train()
        self.callbacks.trigger("before_step", self, batch=batch)
        opt.zero_grad(set_to_none=True)
        with self._own_rng():
            loss, metrics = self.forward_backward(batch)
        self.callbacks.trigger("after_backward", self)
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        max_norm = self.grad_clip if self.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.tensor(0.0)
        if not torch.isfinite(grad_norm).item():
            opt.zero_grad(set_to_none=True)
            self._diverged("gradient norm", float(grad_norm))
        opt.step()
        self._step = t + 1
        row = {"loss": float(loss), "lr": lr, "grad_norm": float(grad_norm), **metrics}
        self.history.log(self._step, **row)
        self.callbacks.trigger("after_step", self, metrics=row)
        return row

    def _diverged(self, what: str, value: float):
        self._optim.zero_grad(set_to_none=True)
        self.history.log(self._step + 1, diverged=1.0)
        msg = (f"The {what} became {value} at step {self._step + 1}; the run stopped and the weights were kept at "
               f"step {self._step}, their last finite values. Lower lr (now {self.lr:g}), enable grad_clip, "
               f"or use autocast='none'.")
        with param.edit_constant(self):
            self.param.update(status="diverged", message=msg)
        self.callbacks.trigger("after_diverge", self, what=what, value=value)
        raise DivergedError(msg)

    def _check_can_train(self):
        if self.status == "diverged":
            raise DivergedError(self.message + " Load a checkpoint or build a new run to continue.")

    def step(self) -> dict:
        """Take one optimizer step (blocking) and return its metrics row."""
        if self._thread is not None and self._thread.is_alive():
            raise ConfigError("This run is training in the background; call stop() before stepping by hand.")
        self._check_can_train()
        with self._lock:
            self.setup()
            row = self._step_once()
        self._publish(row, status="idle")
        return row

    # ------------------------------------------------------------------ loops
    def _publish(self, row: dict | None, **extra) -> None:
        now, (t0, s0) = time.perf_counter(), self._window
        sps = (self._step - s0) / (now - t0) if now > t0 and self._step > s0 else self.steps_per_sec
        self._window = (now, self._step)
        values = dict(last_logged_step=self._step, steps_per_sec=sps, **extra)
        if row is not None:
            values["loss"] = row["loss"]
        with param.edit_constant(self):
            self.param.update(**values)

    def run(self, n: int | None = None, progress: bool = True) -> "Run":
        """Train ``n`` more steps (default: up to ``max_steps``), blocking; ``stop()`` ends it early."""
        if n is not None and (not isinstance(n, int) or n < 0):
            raise ConfigError(f"run(n) needs a whole number of steps ≥ 0, got {n!r}.")
        if self._thread is not None and self._thread.is_alive() and threading.current_thread() is not self._thread:
            raise ConfigError("This run is already training in the background; call stop() or wait() first.")
        self._check_can_train()
        with self._lock:
            self.setup()
            target = self._step + n if n is not None else self.max_steps
            self._stop_event.clear()
            self._window = (time.perf_counter(), self._step)
            with param.edit_constant(self):
                self.param.update(running=True, status="running", message="")
            status = "finished"
            row = None
            bar = tqdm(total=max(0, target - self._step), disable=not progress, desc=self.label or "train", leave=False)
            try:
                self.callbacks.trigger("before_run", self, target=target)
                while self._step < target:
                    if self._stop_event.is_set():
                        status = "stopped"
                        self.callbacks.trigger("after_cancel", self)
                        break
                    row = self._step_once()
                    bar.update(1)
                    if self._step % self.log_every == 0:
                        bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
                        self._publish(row)
            except DivergedError:
                status = "diverged"
                raise
            except BaseException as exc:
                status = "error"
                with param.edit_constant(self):
                    self.param.update(message=f"{type(exc).__name__}: {exc}")
                raise
            finally:
                bar.close()
                if status in ("finished", "stopped"):
                    self._publish(row, status=status, running=False)
                else:
                    with param.edit_constant(self):
                        self.param.update(running=False, status=status)
                self.callbacks.trigger("after_run", self, status=status)
        return self

    def start(self, n: int | None = None) -> "Run":
        """Train in a background thread (non-blocking); ``stop()`` ends it at a step boundary."""
        if self._thread is not None and self._thread.is_alive():
            raise ConfigError("This run is already training in the background; call stop() first.")
        self._check_can_train()
        self.setup()
        self.error = None
        self._stop_event.clear()
        with param.edit_constant(self):
            self.param.update(running=True, status="running")

        def target():
            try:
                self.run(n, progress=False)
            except BaseException as exc:  # kept for the caller; status/message already set
                self.error = exc

        self._thread = threading.Thread(target=target, name=f"workbench-run-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: bool = True, timeout: float | None = None) -> "Run":
        """Ask a running loop to stop after the current step; by default wait until it has."""
        self._stop_event.set()
        if wait:
            self.wait(timeout)
        return self

    def wait(self, timeout: float | None = None) -> "Run":
        """Block until a background run ends; re-raises its error, if any."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self.error is not None and (thread is None or not thread.is_alive()):
            err, self.error = self.error, None
            raise err
        return self

    # ------------------------------------------------------------------ records & checkpoints
    def describe_model(self) -> dict:
        origin = dict(getattr(self.model, "workbench_origin", {}) or {})
        n_params = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {**origin, "class": type(self.model).__name__, "parameters": n_params, "trainable": n_train}

    @property
    def record(self) -> xr_Dataset:
        """The run's labelled ``xarray.Dataset`` with its config, model, data and lineage attached."""
        ds = self.history.to_dataset()
        return annotate(ds, run_id=self.run_id, parent=self.parent, stage=type(self).__name__, label=self.label,
                        config=self.config(), model=self.describe_model(), data=self.data.describe(),
                        seed=self.seed, status=self.status, global_step=self._step)

    def save_record(self, path) -> str:
        """Write the record atomically (``.nc`` or ``.zarr``) and return the path."""
        return str(save_record_file(self.record, path))

    def save_checkpoint(self, path) -> str:
        """Save everything needed to resume bit-identically (see :mod:`workbench.checkpoint`)."""
        from .checkpoint import save_checkpoint

        return save_checkpoint(self, path)

    def load_checkpoint(self, path) -> "Run":
        """Restore this run's state from ``path`` (same model architecture)."""
        from .checkpoint import load_checkpoint

        load_checkpoint(self, path)
        return self

    @classmethod
    def resume(cls, path, model: nn.Module | str | None = None, data: Dataset | str | None = None, **params) -> "Run":
        """A run rebuilt from a checkpoint; model and data are rebuilt from their descriptions when not given."""
        from .checkpoint import resume

        return resume(cls, path, model=model, data=data, **params)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(label={self.label!r}, step={self._step}, status={self.status!r}, "
                f"model={type(self.model).__name__}, data={self.data.name!r})")


from xarray import Dataset as xr_Dataset  # noqa: E402  (annotation only)
