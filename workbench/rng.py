"""Each run's own random streams, and the one lock that keeps concurrent runs from mixing them.

A :class:`RunRNG` holds a run's randomness: its torch CPU stream (dropout and every other torch draw
inside a training step), its CUDA stream on the run's device, and a ``random.Random`` and a
``numpy.random.Generator`` for code of the run that needs Python or NumPy randomness. All are seeded
by the run's ``seed`` and travel with checkpoints, so resuming is bit-identical; Python's and NumPy's
*global* generators are never read or written.

Why a lock: torch has one process-global CPU generator (and one per CUDA device), and ``nn.Dropout``
cannot be handed a generator. A run therefore *swaps its stream in* around the code that draws
(:meth:`RunRNG.active`): save the global state, set the run's, run the step, keep the run's new state,
restore the global one. Two runs doing that from two threads at once would interleave the swaps and
draw from each other's streams, so every swap holds :data:`TORCH_RNG_LOCK` — a process-wide
re-entrant lock. Consequences:

* concurrent runs draw exactly what they would draw alone (same batches, same dropout masks); the
  forward/backward passes of concurrent runs take turns (data preparation, clipping, the optimizer step
  and probes still overlap);
* the global torch generator is left as it was found;
* the limit: code in *another* thread that draws from the global torch RNG while a run is inside its
  step gets numbers from the run's stream (and the run's stream loses nothing, but that thread's draw
  is repeated later). Such code should hold the lock: ``with TORCH_RNG_LOCK: x = torch.rand(3)``, or
  better, use its own ``torch.Generator``; code that seeds the global generator (model builders) should
  use :func:`seeded`.

>>> rng = RunRNG(seed=3)
>>> with rng.active(torch.device("cpu")):
...     a = torch.rand(2)
>>> again = RunRNG(seed=3)
>>> with again.active(torch.device("cpu")):
...     b = torch.rand(2)
>>> bool(torch.equal(a, b)), rng.python.random() == again.python.random()
(True, True)
"""

from __future__ import annotations

import contextlib
import random
import threading

import numpy as np
import torch

from .errors import CorruptFileError

#: Held by every run while its own stream is swapped into torch's global generators.
TORCH_RNG_LOCK = threading.RLock()


def _seed_words(seed: int) -> list[int]:
    """The whole seed as 32-bit words (so seeds that differ by 2**32 give different streams)."""
    seed = int(seed)
    words = [0 if seed >= 0 else 1]
    seed = abs(seed)
    while True:
        words.append(seed & 0xFFFFFFFF)
        seed >>= 32
        if not seed:
            return words


@contextlib.contextmanager
def seeded(seed: int, devices=()):
    """Run the body on torch's global generators seeded with ``seed``, then restore them; under the lock.

    For code that must use the global RNG (building a model, a PEFT adapter init): unlike a bare
    ``torch.random.fork_rng`` + ``manual_seed``, it cannot interleave with a run training in another thread.
    """
    devices = list(devices)
    with TORCH_RNG_LOCK, torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed) % 2**64)
        yield


@contextlib.contextmanager
def isolated(devices=()):
    """Run the body on the global torch generators and restore them afterwards, under the lock (no seeding).

    For code that draws from the global RNG (dropout in an extra forward pass) without changing what
    anyone else draws, even while a run trains in another thread.
    """
    with TORCH_RNG_LOCK, torch.random.fork_rng(devices=list(devices)):
        yield


class RunRNG:
    """A run's torch (CPU, CUDA), Python and NumPy random streams, seeded by ``seed``."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        words = _seed_words(self.seed)
        self.torch_state: torch.Tensor = torch.Generator().manual_seed(self.seed % 2**64).get_state()
        self.cuda_state: torch.Tensor | None = None
        self.cuda_device: torch.device | None = None
        #: for the run's own Python-level randomness (never the global ``random`` module)
        self.python = random.Random(self.seed)
        #: for the run's own NumPy randomness (never ``np.random.*`` globals)
        self.numpy = np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))

    def bind(self, device: torch.device) -> None:
        """Prepare the CUDA stream of ``device`` (seeded by ``seed``) the first time a run uses a GPU."""
        if device.type != "cuda" or (self.cuda_state is not None and self.cuda_device == device):
            return
        with TORCH_RNG_LOCK, torch.random.fork_rng(devices=[device]):
            if self.cuda_state is None:
                torch.cuda.manual_seed(self.seed % 2**64)
            else:  # moved to another GPU: the stream continues there
                torch.cuda.set_rng_state(self.cuda_state, device)
            self.cuda_state = torch.cuda.get_rng_state(device)
        self.cuda_device = device

    @contextlib.contextmanager
    def active(self, device: torch.device):
        """Run the body on this stream (holding :data:`TORCH_RNG_LOCK`); the global state is restored after."""
        cuda = device.type == "cuda"
        if cuda:
            self.bind(device)
        with TORCH_RNG_LOCK, torch.random.fork_rng(devices=[device] if cuda else []):
            torch.set_rng_state(self.torch_state)
            if cuda:
                torch.cuda.set_rng_state(self.cuda_state, device)
            yield self
            self.torch_state = torch.get_rng_state()
            if cuda:
                self.cuda_state = torch.cuda.get_rng_state(device)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain tensors, lists and ints (loadable with ``torch.load(weights_only=True)``)."""
        version, words, gauss = self.python.getstate()
        bitgen = self.numpy.bit_generator.state
        return {"seed": self.seed, "torch": self.torch_state.clone(),
                "cuda": None if self.cuda_state is None else self.cuda_state.cpu(),
                "python": [version, list(words), gauss],
                "numpy": {"state": int(bitgen["state"]["state"]), "inc": int(bitgen["state"]["inc"]),
                          "has_uint32": int(bitgen["has_uint32"]), "uinteger": int(bitgen["uinteger"])}}

    @classmethod
    def from_state_dict(cls, state: dict) -> "RunRNG":
        """A new ``RunRNG`` from :meth:`state_dict` output; :class:`CorruptFileError` if any part is damaged."""
        try:
            rng = cls(int(state["seed"]))
            torch_state = state["torch"]
            if not (isinstance(torch_state, torch.Tensor) and torch_state.dtype == torch.uint8
                    and torch_state.shape == rng.torch_state.shape):
                raise ValueError("the torch stream is not a CPU generator state")
            torch.Generator().set_state(torch_state)  # validates
            rng.torch_state = torch_state.clone()
            if state.get("cuda") is not None:
                if not isinstance(state["cuda"], torch.Tensor):
                    raise ValueError("the CUDA stream is not a tensor")
                rng.cuda_state = state["cuda"].clone()
            if state.get("python") is not None:
                version, words, gauss = state["python"]
                rng.python.setstate((int(version), tuple(int(w) for w in words), gauss))
            if state.get("numpy") is not None:
                n = state["numpy"]
                rng.numpy.bit_generator.state = {"bit_generator": "PCG64", "state": {"state": int(n["state"]),
                                                 "inc": int(n["inc"])}, "has_uint32": int(n["has_uint32"]),
                                                 "uinteger": int(n["uinteger"])}
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CorruptFileError(f"The run's RNG state is damaged ({type(exc).__name__}: {exc}); nothing was "
                                   "changed. Load an intact checkpoint, or build a fresh run with the same seed.") from None
        return rng
