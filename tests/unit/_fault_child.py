"""Helper run in a subprocess by test_faults.py: kill -9 loops and size-limited saves of every kind.

``python _fault_child.py kill DIR N SEED`` and ``python _fault_child.py limit DIR`` print one JSON line
with what they observed for each kind of save. Kept out of the test process so kills and limits stay contained.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import sys
import time
import warnings
from pathlib import Path

warnings.simplefilter("ignore")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

torch.set_num_threads(1)

from workbench import atomic, models, record  # noqa: E402
from workbench.errors import SaveError  # noqa: E402


LIMIT = 64 * 1024  # bytes a file may have under the size-limited saves
KINDS = ("nc", "zarr", "model", "checkpoint")


def _tiny_model():
    return models.build("gpt2-1m", n_layer=1, n_embd=16, n_head=2, vocab_size=64)


def kinds(directory: Path, big: bool = False):
    """name → (target, save(version), load() -> version)."""
    n = 400_000 if big else 2_000
    ds = xr.Dataset({"x": ("i", np.random.default_rng(0).random(n))})  # incompressible
    model = _tiny_model()
    if big:
        model = models.build("gpt2-1m", n_layer=2, vocab_size=512)

    def save_ckpt(path, v):
        state = {"version": v, "w": torch.arange(n, dtype=torch.float32)}
        atomic.write_file(path, lambda f: torch.save(state, f), what="checkpoint")

    return {
        "nc": (directory / "r.nc", lambda p, v: record.save(ds, p, version=v),
               lambda p: int(record.open_record(p).attrs["version"])),
        "zarr": (directory / "r.zarr", lambda p, v: record.save(ds, p, version=v),
                 lambda p: int(record.open_record(p).attrs["version"])),
        "model": (directory / "model", lambda p, v: models.save(model, p, run_id=str(v)),
                  lambda p: int(models.load(p).workbench_origin["run_id"])),
        "checkpoint": (directory / "c.pt", save_ckpt,
                       lambda p: int(torch.load(p, weights_only=True)["version"])),
    }


def litter(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith("."))


def kill_loop(kind: str, n: int, seed: int, directory: Path) -> dict:
    target, save, load = kinds(directory)[kind]
    save(target, 0)
    rng = random.Random(seed)
    last, versions, t0 = 0, [], time.time()
    for i in range(1, n + 1):
        pid = os.fork()
        if pid == 0:  # child: save new versions until killed
            v = i * 1000
            while True:
                v += 1
                save(target, v)
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        got = load(target)  # the previous (or a newer, complete) version always loads
        if got < last:
            return {"ok": False, "why": f"version went back from {last} to {got}"}
        last = got
        versions.append(got)
    save(target, 10**9)  # the next save cleans up what the killed ones left
    return {"ok": load(target) == 10**9, "versions": versions, "litter": litter(directory),
            "seconds": time.time() - t0}


def limit(kind: str, directory: Path) -> dict:
    target, save, load = kinds(directory, big=True)[kind]
    save(target, 1)
    largest = max(f.stat().st_size for f in ([target] if target.is_file() else target.rglob("*")) if f.is_file())
    assert largest > LIMIT, f"{kind}: the test data ({largest} bytes) must exceed the limit"
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))
    try:
        save(target, 2)
        return {"ok": False, "why": "the save passed the file-size limit"}
    except SaveError as exc:
        message, errno = str(exc), exc.errno
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        return {"ok": False, "why": f"{type(exc).__name__}: {exc}"}
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    return {"ok": True, "message": message, "errno": errno, "version": load(target), "litter": litter(directory)}


if __name__ == "__main__":  # one process for every kind: its start-up is the slow part
    mode, root = sys.argv[1], Path(sys.argv[2])
    out = {}
    for kind in KINDS:
        (root / kind).mkdir()
        out[kind] = kill_loop(kind, int(sys.argv[3]), int(sys.argv[4]), root / kind) if mode == "kill" else limit(kind, root / kind)
    print(json.dumps(out), flush=True)
