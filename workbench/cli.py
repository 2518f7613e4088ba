"""The ``workbench`` command: batch jobs outside notebooks.

    workbench train --preset gpt2-1m --data stories --steps 200 --out runs/run.nc [--checkpoint runs/ckpt.pt]
    workbench train --resume runs/ckpt.pt --steps 100 --out runs/run.nc
    workbench train --nproc-per-node 2 --preset gpt2-1m --steps 200 --out runs/run.nc   # DDP, via torchrun
    workbench train --nproc-per-node 2 --strategy fsdp ...                              # sharded (FSDP2)

With ``--out``, the run publishes its history beside the record (``OUT.live``, every ``--publish-every`` s)
while it trains: ``open_record(OUT, follow=True)`` or the dashboard's Records tab follow it (:mod:`workbench.live`).

Every path and value is checked before training starts; a mistake prints one line
(``workbench: error: ...``, exit 2). Ctrl-C or SIGTERM during training stops at the next step boundary
and saves the record and checkpoint it was asked for (exit 130 / 143); a second Ctrl-C quits at once.
    workbench serve [experiment.py] [--address 127.0.0.1] [--port 5006] [--max-running 2] [...]
    workbench presets | datasets | probes

``serve`` hands its arguments to the dashboard's own parser (``workbench serve --help`` lists them): the
labs, or a researcher's ``experiment.py`` (see docs/dashboard.md).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
from pathlib import Path

from .errors import ConfigError, MissingPathError, WorkbenchError, explain, user_errors

EXIT_ERROR = 2
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _parse_set(items) -> dict:
    params = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects NAME=VALUE, got {item!r}; e.g. --set warmup_steps=10.")
        key, value = item.split("=", 1)
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _data_options(text: str | None) -> dict:
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--data-options is not valid JSON ({exc.msg} at character {exc.pos}): pass a JSON object "
                          "in single quotes, e.g. --data-options '{\"n_docs\": 500}'.") from None
    if not isinstance(options, dict):
        raise ConfigError(f"--data-options must be a JSON object like '{{\"n_docs\": 500}}', got {text!r}.")
    return options


def check_outputs(out: str | None, checkpoint: str | None) -> None:
    """Validate the output paths before any training: folder exists, writable, right kind, not a clash."""
    from . import atomic, record

    if out is not None:
        record.check_path(out)
    if checkpoint is not None:
        target = atomic.check_target(checkpoint, "checkpoint")
        if target.is_dir():
            raise ConfigError(f"--checkpoint {checkpoint!r} is a folder: pass a file name inside it, e.g. "
                              f"{str(target / 'ckpt.pt')!r}.")
        atomic.check_writable(target, "checkpoint")
    if out is not None and checkpoint is not None and Path(out).resolve() == Path(checkpoint).resolve():
        raise ConfigError(f"--out and --checkpoint are the same path {out!r}: give them different names.")


class _StopOnSignal:
    """While training: the first SIGINT/SIGTERM asks the run to stop at the next step boundary (so what
    it has is saved); a second one interrupts at once. The handler only sets a flag: the stop request
    itself is made by the training loop's own ``after_step`` callback, never from inside a signal."""

    def __init__(self, run):
        self.run = run
        self.signum: int | None = None
        self._previous = {}

    def _handler(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\nworkbench: {signal.Signals(signum).name} received: stopping at the next step boundary and saving "
              "(press Ctrl-C again to quit without saving).", file=sys.stderr, flush=True)

    def _after_step(self, run, **_):
        if self.signum is not None:
            run.stop(wait=False)

    def __enter__(self):
        self.run.add_callback("after_step", self._after_step, name="cli-stop-on-signal")
        for sig in EXIT_SIGNAL:
            self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self.run.callbacks.remove("cli-stop-on-signal")
        return False


def _save_outputs(run, args, checkpoint: bool = True) -> list[str]:
    from . import distributed

    saved = []
    if args.checkpoint and checkpoint:
        run.save_checkpoint(args.checkpoint)  # under fsdp every rank gathers; only rank 0 writes
        saved.append(f"checkpoint {args.checkpoint}")
    if not distributed.is_main():
        return []
    if args.out:
        run.save_record(args.out)
        saved.append(f"record {args.out}")
    return saved


def _train(args) -> int:
    from . import data as data_mod
    from .run import Run

    # everything a person can get wrong is checked here, before any data is loaded or step is taken
    if args.publish_every < 0 or args.publish_every != args.publish_every:
        raise ConfigError(f"--publish-every must be ≥ 0 seconds (0: off), got {args.publish_every}.")
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be ≥ 1, got {args.steps}; leave it out to train up to max_steps.")
    check_outputs(args.out, args.checkpoint)
    from . import distributed

    if args.strategy is not None and args.nproc_per_node is None and args.strategy != "single" \
            and not distributed.launched():
        raise ConfigError(f"--strategy {args.strategy} runs in several processes: add --nproc-per-node N (e.g. 2).")
    if args.nproc_per_node is not None and args.strategy == "single":
        raise ConfigError("--strategy single runs one process: leave out --nproc-per-node, or use --strategy ddp/fsdp.")
    if args.nproc_per_node is not None and not distributed.launched():  # re-launch this command under torchrun
        return distributed.launch(_worker_argv(args.argv, args.strategy or "ddp"), args.nproc_per_node)
    main_rank = distributed.is_main()  # only rank 0 writes files and prints
    params = _parse_set(args.set)
    if args.strategy is not None:
        params["strategy"] = args.strategy
    for name in ("lr", "batch_size", "seed", "device", "optimizer", "schedule", "log_every"):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    unknown = [k for k in params if k not in Run.param or k in Run.STATE_PARAMS]
    if unknown:
        editable = sorted(k for k in Run.param if k not in Run.STATE_PARAMS)
        raise ConfigError(f"Unknown run parameter(s) {unknown}; settable: {', '.join(editable)}.")
    options = _data_options(args.data_options)
    with user_errors():
        if args.resume:
            if options:
                raise ConfigError("--data-options cannot change the data of a resumed run; leave it out with --resume.")
            run = Run.resume(args.resume, allow_data_change=args.allow_data_change, **params)
        else:
            dataset = data_mod.load(args.data, **options)
            run = Run(args.preset, dataset, **params)
        # probes run on rank 0 only, except under fsdp: there they gather the sharded weights, a collective
        for spec in (args.probe or []) if main_rank or run.strategy == "fsdp" else []:
            name, _, every = spec.partition(":")
            if every and not every.isdigit():
                raise ConfigError(f"--probe {spec!r}: write NAME or NAME:EVERY with EVERY a whole number, e.g. spectra:25.")
            run.add_probe(name, **({"every": int(every)} if every else {}))
        steps = args.steps if args.steps is not None else run.max_steps - run.global_step
        if steps < 1:
            raise ConfigError(f"Nothing to train: the run is at step {run.global_step} of max_steps {run.max_steps}. "
                              "Pass --steps N to train N more steps.")
        if run.global_step + steps > run.max_steps:
            run.max_steps = run.global_step + steps

    if args.out and main_rank and args.publish_every > 0:  # followable live: open_record(out, follow=True)
        run.publish(args.out, every=args.publish_every)
    guard = _StopOnSignal(run)
    with guard:  # stays on while saving: a first signal then lets the save finish
        try:
            run.run(steps, progress=not args.quiet)
        except KeyboardInterrupt:
            print("workbench: interrupted twice: quit without saving.", file=sys.stderr)
            return EXIT_SIGNAL[signal.SIGINT]
        except BaseException:
            # a failed run (diverged, or a bug) still leaves its record: what it learned up to the failure
            if args.out and main_rank:
                try:
                    run.save_record(args.out)
                    print(f"workbench: the run failed at step {run.global_step}; its record up to there is saved "
                          f"to {args.out}.", file=sys.stderr)
                except Exception as exc:  # the original failure matters more
                    print(f"workbench: could not save the record either: {explain(exc) or exc}", file=sys.stderr)
            raise
        try:
            saved = _save_outputs(run, args) if main_rank or run.strategy == "fsdp" else []
        except KeyboardInterrupt:
            print("workbench: interrupted twice while saving: quit; files already there are intact.", file=sys.stderr)
            return EXIT_SIGNAL[signal.SIGINT]
    if not main_rank:
        distributed.shutdown()
        return 0
    distributed.shutdown()
    if guard.signum is not None:
        name = signal.Signals(guard.signum).name
        what = " and ".join(saved) if saved else "nothing (no --out or --checkpoint given)"
        print(f"workbench: stopped by {name} at step {run.global_step}; saved {what}."
              + (f" Continue with: workbench train --resume {args.checkpoint}" if args.checkpoint else ""),
              file=sys.stderr)
        return EXIT_SIGNAL[guard.signum]
    for item in saved:
        print(item.replace(" ", ": ", 1))
    print(f"step {run.global_step}  loss {run.loss:.4f}  status {run.status}")
    return 0


def _worker_argv(argv: list[str], strategy: str = "ddp") -> list[str]:
    """The command each torchrun worker runs: this one without --nproc-per-node / --strategy, with the strategy."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item in ("--nproc-per-node", "--strategy"):
            skip = True
        elif not item.startswith(("--nproc-per-node=", "--strategy=")):
            out.append(item)
    return [*out, "--strategy", strategy]


def check_serve(address: str, port: int, max_running: int) -> None:
    """Validate ``serve`` arguments before importing the view layer: a usable address, a free port."""
    if max_running < 1:
        raise ConfigError(f"--max-running must be ≥ 1, got {max_running}.")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}; e.g. --port 5006.")
    if not address.strip():
        raise ConfigError("--address is empty: pass a local address such as 127.0.0.1.")
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"--address {address!r} is not an address of this machine ({exc.strerror}); "
                          "use 127.0.0.1 (or 0.0.0.0 to listen on every interface).") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            raise ConfigError(f"Cannot listen on {address}:{port}: {exc.strerror}. Pick another --port (or an address "
                              "this machine has).") from None


def _serve(argv: list[str]) -> int:
    """``workbench serve …``: the dashboard's parser reads the arguments; they are checked before anything is served."""
    try:
        from widgets import serve as dashboard
    except ImportError as exc:
        raise WorkbenchError(f"The dashboard needs the view layer (panel, holoviews): install workbench[ui] ({exc}).") from None
    args = dashboard.build_parser().parse_args(argv)  # --help and usage errors: argparse's own message, exit 0 / 2
    check_serve(args.address, args.port, args.max_running)
    if args.experiment is not None and not Path(args.experiment).is_file():
        raise MissingPathError(f"No experiment file at {args.experiment!r}: pass the path of a .py file that defines "
                               "experiment() returning a stage (see docs/dashboard.md).")
    return dashboard.main(argv)


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
    t.add_argument("--allow-data-change", action="store_true",
                   help="resume even if the data differs from the checkpoint's (refused by default)")
    t.add_argument("--probe", action="append", metavar="NAME[:EVERY]",
                   help="attach a probe by name, e.g. spectra:25 (repeatable; names: workbench probes)")
    t.add_argument("--lr", type=float)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--device")
    t.add_argument("--optimizer")
    t.add_argument("--schedule")
    t.add_argument("--log-every", dest="log_every", type=int)
    t.add_argument("--set", action="append", metavar="NAME=VALUE", help="any other run parameter (repeatable)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--publish-every", dest="publish_every", type=float, default=1.0, metavar="SECONDS",
                   help="publish the history beside --out (OUT.live) at most every SECONDS while training, so "
                        "open_record(OUT, follow=True) and the dashboard can follow it (0: off; default 1)")
    t.add_argument("--nproc-per-node", dest="nproc_per_node", type=int, metavar="N",
                   help="data-parallel over N processes on this machine, launched by torchrun; --batch-size "
                        "stays the global batch (see docs/run.md)")
    t.add_argument("--strategy", choices=["single", "ddp", "fsdp"],
                   help="with --nproc-per-node: ddp (default; whole model on every process) or fsdp (model, gradients "
                        "and optimizer state sharded over the processes, FSDP2)")
    t.set_defaults(fn=_train)
    sub.add_parser("serve", add_help=False, help="serve the dashboard on 127.0.0.1: the labs, or your experiment.py "
                   "(workbench serve --help)")
    p = sub.add_parser("presets", help="list model presets")
    p.set_defaults(fn=lambda a: _list(__import__("workbench.models", fromlist=["PRESETS"]).PRESETS))
    pr = sub.add_parser("probes", help="list probes (for --probe)")
    pr.set_defaults(fn=lambda a: (__import__("workbench.probes", fromlist=["names"]).names(),
                                  _list(__import__("workbench.probes", fromlist=["PROBES"]).PROBES))[1])
    d = sub.add_parser("datasets", help="list built-in datasets")
    d.set_defaults(fn=lambda a: _list(__import__("workbench.data", fromlist=["DATASETS"]).DATASETS))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; a user error prints one line (``workbench: error: ...``) and exits 2, never a
    traceback. Only a bug in the workbench shows a traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["serve"]:
            return _serve(argv[1:])
        args = build_parser().parse_args(argv)
        args.argv = argv
        return args.fn(args)
    except KeyboardInterrupt:
        print("workbench: interrupted before training started; nothing was saved.", file=sys.stderr)
        return EXIT_SIGNAL[signal.SIGINT]
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        print(f"workbench: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
