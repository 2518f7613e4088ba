"""workbench — a notebook-first research workbench for the training dynamics of neural networks.

Core library: torch + param + xarray, no UI imports (views live in the separate ``widgets`` package).

>>> import workbench
>>> sorted(workbench.EVENTS)[:3]
['after_backward', 'after_cancel', 'after_diverge']
"""

from __future__ import annotations

from . import data, errors, groups, models, optim, record
from .events import EVENTS
from .groups import combine, config_table, sign_count, summarize
from .history import History
from .matrices import canonical_name, weight_matrices
from .probes import PROBES, EvalLoss, Probe
from .record import meta, open_record, save as save_record
from .run import Run
from .snapshot import Snapshot

__version__ = "0.1.0"

__all__ = ["Run", "History", "Snapshot", "Probe", "EvalLoss", "PROBES", "EVENTS", "data", "models", "optim", "record",
           "errors", "groups", "combine", "summarize", "sign_count", "config_table", "weight_matrices", "canonical_name", "open_record", "save_record", "meta", "__version__"]
