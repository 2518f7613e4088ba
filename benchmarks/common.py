"""Shared benchmark helpers: alternating repeats, ratios, and the table format.

Each ``benchmarks/bench_*.py`` has ``run(quick: bool = False) -> list[dict]``; each row has
``benchmark``, ``measurement`` (what was compared), ``ratio`` (float), ``goal`` (text, e.g. "≤ 1.03"),
``ok`` (bool) and ``detail`` (absolute numbers). ``python -m benchmarks.run_all`` prints them all as
one Markdown table (the one in the README).
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def alternate(fns: dict[str, Callable[[], object]], repeats: int = 3, warmup: int = 1) -> dict[str, float]:
    """Median wall time of each callable, run in alternation (a, b, a, b, …) after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def row(benchmark: str, measurement: str, ratio: float, goal: str, ok: bool, detail: str = "") -> dict:
    return {"benchmark": benchmark, "measurement": measurement, "ratio": float(ratio), "goal": goal, "ok": bool(ok),
            "detail": detail}


def table(rows: list[dict]) -> str:
    lines = ["| benchmark | measurement | ratio | goal | met | detail |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['benchmark']} | {r['measurement']} | {r['ratio']:.3g} | {r['goal']} | "
                     f"{'yes' if r['ok'] else 'no'} | {r['detail']} |")
    return "\n".join(lines)
