"""The ``workbench`` command: batch jobs outside notebooks.

    workbench train --preset gpt2-1m --data stories --steps 200 --out runs/run.nc [--checkpoint runs/ckpt.pt]
    workbench train --resume runs/ckpt.pt --steps 100 --out runs/run.nc
    workbench serve [--address 127.0.0.1] [--port 5006] [--max-running 2]
    workbench presets | datasets
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import WorkbenchError


def _train(args) -> int:
    from . import data as data_mod
    from .run import Run

    params = {}
    for item in args.set or []:
        if "=" not in item:
            raise WorkbenchError(f"--set expects NAME=VALUE, got {item!r}.")
        key, value = item.split("=", 1)
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    for name in ("lr", "batch_size", "seed", "device", "optimizer", "schedule", "log_every"):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    unknown = [k for k in params if k not in Run.param or k in Run.STATE_PARAMS]
    if unknown:
        editable = sorted(k for k in Run.param if k not in Run.STATE_PARAMS)
        raise WorkbenchError(f"Unknown run parameter(s) {unknown}; settable: {', '.join(editable)}.")
    if args.resume:
        run = Run.resume(args.resume, **params)
    else:
        options = json.loads(args.data_options) if args.data_options else {}
        dataset = data_mod.load(args.data, **options)
        run = Run(args.preset, dataset, **params)
    if args.steps is not None and not args.resume:
        run.max_steps = max(run.max_steps, run.global_step + args.steps)
    steps = args.steps if args.steps is not None else max(0, run.max_steps - run.global_step)
    if run.global_step + steps > run.max_steps:
        run.max_steps = run.global_step + steps
    run.run(steps, progress=not args.quiet)
    if args.checkpoint:
        run.save_checkpoint(args.checkpoint)
        print(f"checkpoint: {args.checkpoint}")
    if args.out:
        run.save_record(args.out)
        print(f"record: {args.out}")
    print(f"step {run.global_step}  loss {run.loss:.4f}  status {run.status}")
    return 0


def _serve(args) -> int:
    try:
        from widgets.serve import serve
    except ImportError as exc:
        raise WorkbenchError(f"The dashboard needs the view layer (panel, holoviews): install workbench[ui] ({exc}).") from None
    serve(address=args.address, port=args.port, max_running=args.max_running, show=False)
    return 0


def _list(registry) -> int:
    for row in registry.table():
        print(f"{row['name']:<22} {row['help']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Research workbench for training dynamics.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model and save its record (and checkpoint)")
    t.add_argument("--preset", default="gpt2-1m", help="model preset or local model directory")
    t.add_argument("--data", default="stories", help="dataset name or path (.txt, .jsonl, save_to_disk dir)")
    t.add_argument("--data-options", help='JSON options for the dataset, e.g. \'{"n_docs": 500}\'')
    t.add_argument("--steps", type=int, help="steps to train (default: up to max_steps)")
    t.add_argument("--out", help="record path (.nc or .zarr)")
    t.add_argument("--checkpoint", help="write a checkpoint here at the end")
    t.add_argument("--resume", help="continue from this checkpoint")
    t.add_argument("--lr", type=float)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--device")
    t.add_argument("--optimizer")
    t.add_argument("--schedule")
    t.add_argument("--log-every", dest="log_every", type=int)
    t.add_argument("--set", action="append", metavar="NAME=VALUE", help="any other run parameter (repeatable)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(fn=_train)
    s = sub.add_parser("serve", help="serve the dashboard (Panel) on 127.0.0.1")
    s.add_argument("--address", default="127.0.0.1")
    s.add_argument("--port", type=int, default=5006)
    s.add_argument("--max-running", dest="max_running", type=int, default=2, help="cap on concurrently running trainings")
    s.set_defaults(fn=_serve)
    p = sub.add_parser("presets", help="list model presets")
    p.set_defaults(fn=lambda a: _list(__import__("workbench.models", fromlist=["PRESETS"]).PRESETS))
    d = sub.add_parser("datasets", help="list built-in datasets")
    d.set_defaults(fn=lambda a: _list(__import__("workbench.data", fromlist=["DATASETS"]).DATASETS))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except WorkbenchError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
