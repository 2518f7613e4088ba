"""Shared set-up of the UI tests.

torch runs on one thread here: on a small shared CPU machine, two OpenMP threads per process while other
processes also compute make each step 10× slower (measured: 6 steps of gpt2-1m 0.9 s vs 12.5 s), and
these tests measure behaviour, not speed.
"""

import os

import torch

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by servers the browser tests start

