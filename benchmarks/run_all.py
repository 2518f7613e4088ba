"""Run every ``benchmarks/bench_*.py`` and print one Markdown table (the README's).

    python -m benchmarks.run_all [--quick] [--only core,spectra]

Writes the table to ``benchmarks/out/results.md`` as well. A benchmark that fails is reported as a row
with its error, not fatal to the others.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from .common import row, table


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    only = None
    if "--only" in argv:
        only = set(argv[argv.index("--only") + 1].split(","))
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    rows = []
    for name in names:
        topic = name.removeprefix("bench_")
        if only and topic not in only:
            continue
        t0 = time.perf_counter()
        try:
            rows += importlib.import_module(f"benchmarks.{name}").run(quick=quick)
        except Exception as exc:  # report, keep going
            traceback.print_exc()
            rows.append(row(topic, f"FAILED: {type(exc).__name__}: {exc}", float("nan"), "-", False))
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr)
    text = table(rows)
    print(text)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
