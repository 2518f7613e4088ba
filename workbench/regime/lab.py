"""The init lab: dial an RNN's recurrent init (scale, rank, alignment), preview it, train it, map it.

State and logic only (no UI): the view in ``widgets/regime.py`` shows the sliders, the preview and the
regime map. Every trained point — from :meth:`InitLab.train` or from a sweep added with
:meth:`InitLab.add_sweep` — is appended to ``lab.history`` (one row per point: the dials and the regime
metrics), which views poll with their own cursor.

>>> lab = InitLab(n_hidden=16, rank=2, steps=3, n_train=32, n_probe=8)
>>> int(lab.preview().numerical_rank_after.sel(matrix="weight_rec"))
2
>>> point = lab.train()                         # blocking; lab.start() trains in a thread
>>> sorted(point)[:2], len(lab.history)
(['accuracy', 'aligned'], 1)
"""

from __future__ import annotations

import math
import threading

import numpy as np
import param
import xarray as xr

from ..display import Displayable
from ..errors import ConfigError
from ..history import History

DIALS = ("scale", "rank", "alignment", "aligned", "seed")


class InitLab(Displayable, param.Parameterized):
    """Recurrent-init dials plus a short training run per click; results accumulate in ``history``."""

    task = param.Selector(default="two_afc", objects=["two_afc", "delayed_match"], doc="Cognitive task.")
    n_hidden = param.Integer(default=64, bounds=(2, 1000), doc="RNN width N.")
    scale = param.Number(default=1.0, bounds=(0.01, 10), softbounds=(0.1, 4), doc="Multiplier of the 1.25/√N Gaussian gain.")
    rank = param.Integer(default=0, bounds=(0, None), softbounds=(0, 64), doc="Rank of W_rec (0 = full rank).")
    aligned = param.Boolean(default=False, doc="Use the task-aligned low-rank init (else random low rank).")
    alignment = param.Number(default=1.0, bounds=(0, 1), doc="Task alignment of the aligned init (0 = random, 1 = task).")
    seed = param.Integer(default=0, bounds=(0, None), doc="Seed of the init and of the data order.")
    steps = param.Integer(default=200, bounds=(1, None), doc="Training steps per point (SGD, momentum 0.9).")
    lr = param.Number(default=0.003, bounds=(0, None), inclusive_bounds=(False, True), doc="SGD learning rate.")
    n_train = param.Integer(default=512, bounds=(8, None), doc="Training trials of the task.")
    n_probe = param.Integer(default=32, bounds=(2, None), doc="Probe batch for kernel/representation alignment.")
    running = param.Boolean(default=False, constant=True, doc="True while a point trains in the background.")
    message = param.String(default="", constant=True, doc="Last status or error.")

    def __init__(self, **params):
        super().__init__(**params)
        self.history = History()
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()

    def config(self) -> dict:
        """The trial config of the current dials (see :func:`workbench.regime.rich_lazy_trial`)."""
        if self.rank > self.n_hidden:
            raise ConfigError(f"rank={self.rank} exceeds n_hidden={self.n_hidden}; use 0 (full) or 1…{self.n_hidden}.")
        return dict(task=self.task, n_hidden=self.n_hidden, scale=self.scale, rank=self.rank,
                    alignment=self.alignment if self.aligned else None, seed=self.seed, steps=self.steps, lr=self.lr,
                    n_train=self.n_train, n_probe=self.n_probe)

    def preview(self) -> xr.Dataset:
        """Spectrum and effective rank of W_rec under the current dials (before training)."""
        from ..init import preview
        from .trial import build_trial

        _, model, _, _ = build_trial({**self.config(), "steps": 1})
        return preview(model, "scale", factor=1.0, include="^weight_rec$")

    def _record(self, metrics: dict) -> dict:
        cfg = self.config()
        point = {"scale": float(cfg["scale"]), "rank": float(cfg["rank"] or cfg["n_hidden"]),
                 "alignment": float(cfg["alignment"]) if cfg["alignment"] is not None else math.nan,
                 "aligned": float(cfg["alignment"] is not None), "seed": float(cfg["seed"]), **metrics}
        with self._lock:
            self.history.log(len(self.history) + 1, **point)
        return point

    def train(self) -> dict:
        """Train one point with the current dials (blocking); returns and records its metrics."""
        from .trial import rich_lazy_trial

        return self._record(rich_lazy_trial(self.config()))

    def start(self) -> "InitLab":
        """Train one point in a background thread (``running`` is True until it is recorded and the thread is done)."""
        self.config()  # validate before starting
        with self._start_lock:  # check-and-set: two clicks cannot start two points
            if self.running:
                raise ConfigError("A point is already training; wait for it (lab.wait()) before starting another.")
            with param.edit_constant(self):
                self.param.update(running=True, message="training…")

        def target():
            msg = ""
            try:
                point = self.train()
                msg = f"trained: weight change {point['delta_rel_norm']:.3g}, kernel alignment {point['kernel_alignment']:.3g}"
            except Exception as exc:  # kept for wait(); shown as the message
                self.error, msg = exc, f"{type(exc).__name__}: {exc}"
            finally:
                with param.edit_constant(self):
                    self.param.update(running=False, message=msg)

        self._thread = threading.Thread(target=target, name="workbench-initlab", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> "InitLab":
        """Block until a background point is done; re-raise its error if it failed."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            err, self.error = self.error, None
            raise err
        return self

    def add_sweep(self, ds: xr.Dataset) -> int:
        """Append every successful point of a :func:`~workbench.regime.sweep` result to the history; returns how many."""
        flat = ds.to_dataframe().reset_index()
        ok = flat[flat["status"] == "ok"] if "status" in flat else flat
        n = 0
        for _, row in ok.iterrows():
            vals = {k: float(v) for k, v in row.items() if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}
            if "alignment" in vals and "aligned" not in vals:
                vals["aligned"] = float(not math.isnan(vals["alignment"]))
            with self._lock:
                self.history.log(len(self.history) + 1, **vals)
            n += 1
        return n

    def points(self) -> xr.Dataset:
        """All recorded points as a Dataset over ``step`` (= point number)."""
        return self.history.to_dataset().rename(step="point")


def grid_summary(ds: xr.Dataset, var: str, x: str, y: str | None = None) -> xr.DataArray:
    """``var`` of a sweep averaged over every dim except ``x`` (and ``y``), failed points ignored (NaN)."""
    if var not in ds:
        raise ConfigError(f"The sweep has no {var!r}; it has {', '.join(v for v in ds.data_vars)}.")
    keep = [d for d in (x, y) if d is not None]
    missing = [d for d in keep if d not in ds.dims]
    if missing:
        raise ConfigError(f"Dim(s) {missing} are not sweep dims; dims: {list(ds.dims)}.")
    da = ds[var].where(ds["status"] == "ok") if "status" in ds else ds[var]
    return da.mean([d for d in da.dims if d not in keep], skipna=True)
