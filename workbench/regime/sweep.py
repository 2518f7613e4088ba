"""Sweeps: map a trial function over a parameter grid and get ONE labelled ``xarray.Dataset`` back.

>>> from workbench.regime import sweep
>>> ds = sweep({"rank": [1, 0], "seed": [0, 1]}, fixed={"n_hidden": 16, "steps": 3, "n_train": 32, "n_probe": 8},
...            progress=False)                                               # doctest: +SKIP
>>> ds.delta_rel_norm.dims, ds.status.values.tolist()                           # doctest: +SKIP
(('rank', 'seed'), [['ok', 'ok'], ['ok', 'ok']])

Backends: ``"serial"`` (in this process), ``"processes"`` (a spawn-context process pool of
``n_workers``) and ``"dask"`` (``client=`` an existing ``distributed.Client``, ``address=`` a scheduler
to connect to with a short timeout, or — by default — a fresh ``LocalCluster`` of ``n_workers``
processes that is closed afterwards). Each configuration is ``{**fixed, **grid point}``; a failing one is
recorded (``status = "error"``, ``error`` = the exception text, metrics NaN) and never stops the sweep.
A progress bar (tqdm) counts finished configurations. With ``out=`` (``.nc``/``.zarr``) the results so
far are saved atomically (:func:`workbench.record.save`) at most every ``save_every_s`` seconds, at the
end, and when the sweep is interrupted or fails — so a crash or Ctrl-C keeps every finished
configuration; unfinished ones are marked ``status = "pending"``. ``out`` is checked before any trial runs.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from ..errors import ConfigError

BACKENDS = ("serial", "processes", "dask")


def expand_grid(grid: dict) -> tuple[list[str], list[tuple[tuple[int, ...], dict]]]:
    """Grid dims and every ``(index, point)`` of the Cartesian product; validates the grid."""
    if not isinstance(grid, dict) or not grid:
        raise ConfigError("The sweep grid is empty: pass a dict of parameter → list of values, e.g. {'rank': [1, 8, 64]}.")
    for key, values in grid.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"Grid keys must be parameter names (non-empty strings), got {key!r}.")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
            raise ConfigError(f"Grid values for {key!r} must be a non-empty list, got {values!r}.")
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"Grid values for {key!r} repeat ({list(values)!r}); each value must appear once.")
    dims = list(grid)
    points = [(idx, {d: grid[d][i] for d, i in zip(dims, idx)})
              for idx in itertools.product(*(range(len(grid[d])) for d in dims))]
    return dims, points


def _safe_call(fn: Callable, config: dict) -> dict:
    """Run one configuration; never raises (a failure becomes ``status="error"``)."""
    t0 = time.perf_counter()
    try:
        metrics = fn(config)
        if not isinstance(metrics, dict):
            raise TypeError(f"the trial function must return a dict of metrics, got {type(metrics).__name__}")
        metrics = {k: float(v) for k, v in metrics.items()}
        return {"status": "ok", "error": "", "metrics": metrics, "seconds": time.perf_counter() - t0}
    except Exception as exc:  # recorded in the result, not fatal to the sweep
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}{where}", "metrics": {},
                "seconds": time.perf_counter() - t0}


def _init_worker(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _connect(address: str, timeout: float):
    from distributed import Client

    try:
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"Cannot reach the Dask scheduler at {address!r} within {timeout:g} s ({type(exc).__name__}: {exc}). "
                          "Check the address (tcp://host:port) and that the scheduler is running, or omit address= "
                          "to start a LocalCluster.") from None


def sweep(grid: dict, fn: Callable | None = None, fixed: dict | None = None, backend: str = "dask", client=None,
          address: str | None = None, n_workers: int = 2, threads_per_worker: int = 1, processes: bool = True,
          connect_timeout: float = 5.0, progress: bool = True, out: str | None = None,
          save_every_s: float = 30.0) -> xr.Dataset:
    """Run ``fn({**fixed, **point})`` for every point of ``grid`` and collect one Dataset.

    Parameters
    ----------
    grid : ``{param: [values]}``; each key becomes a dim with its values as coordinates.
    fn : picklable ``fn(config) -> {metric: float}``; default :func:`workbench.regime.rich_lazy_trial`.
    fixed : settings shared by every point.
    backend : ``"serial"``, ``"processes"`` or ``"dask"`` (implied when ``client``/``address`` is given).
    client, address : an existing ``distributed.Client`` or a scheduler address (fails fast after
        ``connect_timeout`` seconds when unreachable); neither → a ``LocalCluster(n_workers,
        threads_per_worker, processes)`` started and closed here.
    out : save the results here as they come in (see the module docstring); ``save_every_s`` throttles.

    Returns
    -------
    ``xr.Dataset`` with dims = grid keys; one variable per metric, plus ``status`` ("ok"/"error"),
    ``error`` (message) and ``seconds``; ``attrs`` hold the fixed settings (``fixed``, and as ``config`` like a
    combined group), ``combined_over`` (the grid dims) and the backend. It has the shape of
    :func:`workbench.groups.combine` over the grid keys: a grid with ``"seed"`` gives a ``seed`` dim, so
    ``summarize(ds, over="seed")`` gives mean, sd, 95 % CI and n per remaining grid point (failed points,
    NaN, are left out of ``n``).
    """
    if fn is None:
        from .trial import rich_lazy_trial as fn
    if not callable(fn):
        raise ConfigError(f"fn must be a callable fn(config) -> dict, got {type(fn).__name__}.")
    if client is not None or address is not None:
        backend = "dask"
    if backend not in BACKENDS:
        raise ConfigError(f"Unknown sweep backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    if not isinstance(n_workers, int) or n_workers < 1:
        raise ConfigError(f"n_workers must be an integer ≥ 1, got {n_workers!r}.")
    fixed = dict(fixed or {})
    dims, points = expand_grid(grid)
    overlap = sorted(set(fixed) & set(dims))
    if overlap:
        raise ConfigError(f"{overlap} appear both in the grid and in fixed=; keep each setting in one place.")
    if out is not None:
        from ..record import check_path

        check_path(out)
    configs = [{**fixed, **p} for _, p in points]
    bar = tqdm(total=len(points), desc="sweep", disable=not progress, leave=False)
    results: list[dict | None] = [None] * len(points)
    t0 = time.perf_counter()
    fn_name = getattr(fn, "__qualname__", repr(fn))
    last_save = [t0]

    def done(i: int, result: dict) -> None:
        results[i] = result
        bar.update(1)
        if out is not None and time.perf_counter() - last_save[0] >= save_every_s:
            _save(out, _assemble(grid, dims, points, results, fixed, backend, time.perf_counter() - t0, fn_name))
            last_save[0] = time.perf_counter()

    finished = False
    try:
        if backend == "serial":
            for i, cfg in enumerate(configs):
                done(i, _safe_call(fn, cfg))
        elif backend == "processes":
            import multiprocessing as mp

            with ProcessPoolExecutor(max_workers=n_workers, mp_context=mp.get_context("spawn"),
                                     initializer=_init_worker, initargs=(threads_per_worker,)) as pool:
                futures = {pool.submit(_safe_call, fn, cfg): i for i, cfg in enumerate(configs)}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
        else:
            _run_dask(fn, configs, client, address, n_workers, threads_per_worker, processes, connect_timeout, done)
        finished = True
    finally:
        bar.close()
        if out is not None and not finished and any(r is not None for r in results):
            try:  # keep what finished; never mask the exception that stopped the sweep
                _save(out, _assemble(grid, dims, points, results, fixed, backend, time.perf_counter() - t0, fn_name))
            except Exception:  # noqa: BLE001
                pass
    ds = _assemble(grid, dims, points, results, fixed, backend, time.perf_counter() - t0, fn_name)
    if out is not None:
        _save(out, ds)
    return ds


def _save(out, ds: xr.Dataset) -> None:
    from ..record import save

    save(ds, out, stage="sweep")


# Dask settings for torch trials. The nanny exports MALLOC_TRIM_THRESHOLD_=65536 to workers by default: glibc then
# returns freed memory to the OS after almost every tensor free, and torch's many small CPU allocations page-fault
# again — measured here: an RNN trial took 2.1 s in a worker vs 0.9 s with the default threshold. The statistical
# profiler samples every worker thread's stack every 10 ms: pure overhead for Python-heavy trials (RNN time loops).
TORCH_DASK_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                     "distributed.worker.profile.enabled": False}


def local_cluster(n_workers: int = 2, threads_per_worker: int = 1, processes: bool = True, **kwargs):
    """A ``distributed.LocalCluster`` configured for torch trials (see ``TORCH_DASK_CONFIG``); close it after use."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(TORCH_DASK_CONFIG):
        return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=processes,
                            dashboard_address=kwargs.pop("dashboard_address", None), **kwargs)


def _run_dask(fn, configs, client, address, n_workers, threads_per_worker, processes, timeout, done) -> None:
    from distributed import Client, LocalCluster, as_completed as dask_completed

    own_cluster = own_client = None
    try:
        if client is None:
            if address is not None:
                client = own_client = _connect(address, timeout)
            else:
                own_cluster = local_cluster(n_workers, threads_per_worker, processes)
                client = own_client = Client(own_cluster)
        if processes or address is not None or own_cluster is None:
            client.run(_init_worker, threads_per_worker)
        futures = client.map(_safe_call, [fn] * len(configs), configs, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in dask_completed(futures):
            try:
                result = fut.result()
            except Exception as exc:  # a worker died: record, don't abort the sweep
                result = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "metrics": {}, "seconds": math.nan}
            done(index[fut.key], result)
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()


def _assemble(grid, dims, points, results, fixed, backend, elapsed, fn_name) -> xr.Dataset:
    shape = tuple(len(grid[d]) for d in dims)
    pending = {"status": "pending", "error": "", "metrics": {}, "seconds": math.nan}
    results = [pending if r is None else r for r in results]
    names = sorted({k for r in results for k in r["metrics"]})
    data = {k: np.full(shape, np.nan) for k in names}
    status = np.full(shape, "error", dtype=object)
    error = np.full(shape, "", dtype=object)
    seconds = np.full(shape, np.nan)
    for (idx, _), r in zip(points, results):
        status[idx], error[idx], seconds[idx] = r["status"], r["error"], r["seconds"]
        for k, v in r["metrics"].items():
            data[k][idx] = v
    coords = {d: _coord(grid[d]) for d in dims}
    ds = xr.Dataset({k: (dims, v) for k, v in data.items()}, coords=coords)
    ds["status"] = (dims, status.astype(str))
    ds["error"] = (dims, error.astype(str))
    ds["seconds"] = (dims, seconds)
    # the attributes a combined group of records has (workbench.groups.combine): the settings every point shares
    # as "config", the grid dims as what the points differ in — so summarize/ci_table/finding read sweeps as well
    ds.attrs.update(fixed=json.dumps(fixed, default=str), config=json.dumps(fixed, sort_keys=True, default=str),
                    combined_over=",".join(dims), backend=backend, elapsed_s=float(elapsed), fn=fn_name,
                    n_failed=int((status != "ok").sum()))
    return ds


def _coord(values) -> np.ndarray:
    if any(v is None for v in values):  # None is not a netCDF value: keep as text
        return np.asarray([str(v) for v in values])
    return np.asarray(list(values))
