"""Serve the workbench dashboard (built by :mod:`widgets.app`): ``workbench serve``, ``make serve``,
``python -m widgets.serve [experiment.py]``.

>>> from widgets.serve import serve
>>> serve(port=5006)                                  # blocks; open http://127.0.0.1:5006     # doctest: +SKIP
>>> serve(port=5006, experiment="experiment.py")      # a researcher's own experiment()        # doctest: +SKIP
>>> server = serve(port=0, threaded=True)             # in the background (tests, benchmarks)   # doctest: +SKIP

Binds 127.0.0.1 by default. Binding another address exposes a training server to that network: each
visitor can start CPU-heavy work (bounded by ``max_running``) and write files in a folder of their own.
Pages and websockets are accepted only for the served addresses (``Host`` and ``Origin`` both checked:
see :mod:`widgets.dashboard.security`); pass ``allow_hosts`` for a name a proxy forwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import panel as pn

log = logging.getLogger("workbench.dashboard")


def set_torch_threads(max_running: int) -> int:
    """Give each concurrent training an equal share of the cores (``WORKBENCH_TORCH_THREADS`` overrides).

    Oversubscribed OpenMP threads are far worse than fewer threads: on a 2-core machine with other work,
    gpt2-1m ran 6 steps in 12.5 s with 2 threads against 0.9 s with 1.
    """
    import torch

    threads = int(os.environ.get("WORKBENCH_TORCH_THREADS", "0")) or max(1, (os.cpu_count() or 1) // max(1, max_running))
    torch.set_num_threads(threads)
    return threads


def allowed_hosts(address: str, port: int, extra: list[str] | None = None) -> list[str]:
    """``host:port`` names a browser may use for this server (its ``Host`` and ``Origin`` allowlist).

    >>> allowed_hosts("127.0.0.1", 5006)
    ['127.0.0.1:5006', 'localhost:5006']
    """
    hosts = [f"{address}:{port}"]
    if address in ("127.0.0.1", "localhost", "0.0.0.0", "::"):
        hosts += [f"localhost:{port}", f"127.0.0.1:{port}"]
    hosts += [h if ":" in h else f"{h}:{port}" for h in (extra or [])]
    return [h for i, h in enumerate(hosts) if h not in hosts[:i] and not h.startswith(("0.0.0.0:", "[::]:", "::"))]


def serve(address: str = "127.0.0.1", port: int = 5006, max_running: int = 2, show: bool = False,
          results_dir: str | None = None, n_docs: int | None = None, experiment: str | None = None,
          settings: dict | None = None, allow_hosts: list[str] | None = None, threaded: bool = False, **kwargs):
    """Serve the dashboard; blocks unless ``threaded`` (then returns the server thread, ``.stop()`` it).

    ``max_running`` caps concurrently training runs across all sessions; ``results_dir`` holds every
    session's own folder; ``n_docs`` sizes the Training/Spectra data; ``experiment`` is a Python file whose
    ``experiment()`` returns the stages to serve instead of the labs; ``settings`` sets any
    :class:`~widgets.app.DashboardConfig` parameter. Extra keyword arguments go to :func:`panel.serve`.
    Bad settings or a missing experiment file raise a workbench error before anything is served.
    """
    from widgets.app import CONFIG, SLOTS, create_app
    from widgets.dashboard import security
    from workbench.errors import ConfigError

    updates = dict(settings or {})
    updates["max_running"] = max_running
    if results_dir is not None:
        updates["results_dir"] = results_dir
    if n_docs is not None:
        updates["n_docs"] = n_docs
    unknown = sorted(k for k in updates if k not in CONFIG.param or k == "name")
    if unknown:
        raise ConfigError(f"Unknown dashboard setting(s) {unknown}; known: "
                          f"{', '.join(p for p in CONFIG.param if p != 'name')}.")
    try:
        CONFIG.param.update(**updates)
    except ValueError as exc:
        raise ConfigError(f"Bad dashboard setting: {exc}") from None
    SLOTS.max_running, SLOTS.max_batch_size, SLOTS.max_steps = CONFIG.max_running, CONFIG.max_batch_size, CONFIG.max_steps_limit
    exp = None
    if experiment is not None:
        from widgets.dashboard.experiment import Experiment

        exp = Experiment(experiment)
    set_torch_threads(CONFIG.max_running)
    security.install()
    pn.extension()
    kwargs.setdefault("websocket_origin", allowed_hosts(address, port, allow_hosts))
    kwargs.setdefault("title", f"workbench · {exp.name}" if exp else "workbench")
    return pn.serve({"/": lambda: create_app(CONFIG, SLOTS, exp)}, address=address, port=port, show=show,
                    threaded=threaded, **kwargs)


def _setting(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects NAME=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench serve", description="Serve the workbench dashboard.")
    parser.add_argument("experiment", nargs="?", default=None,
                        help="A Python file defining experiment() that returns the stage(s) to serve (default: the labs).")
    parser.add_argument("--address", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only).")
    parser.add_argument("--port", type=int, default=5006, help="Port (default 5006).")
    parser.add_argument("--max-running", type=int, default=2, help="Trainings allowed at once across sessions (default 2).")
    parser.add_argument("--results-dir", default=None, help="Folder of the sessions' folders (default results/dashboard).")
    parser.add_argument("--n-docs", type=int, default=None, help="Documents of the Training/Spectra data (default 300).")
    parser.add_argument("--allow-host", action="append", default=None, metavar="HOST[:PORT]",
                        help="Another host name browsers use for this server (e.g. behind a proxy); repeatable.")
    parser.add_argument("--set", action="append", type=_setting, default=[], metavar="NAME=VALUE",
                        help="Any dashboard setting (e.g. pretrain_steps=100); repeatable.")
    parser.add_argument("--show", action="store_true", help="Open a browser tab.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m widgets.serve [experiment.py] [--address A] [--port P] [--max-running N] …``; errors are one line."""
    from workbench.errors import WorkbenchError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print(f"workbench dashboard on http://{args.address}:{args.port}/", flush=True)
    try:
        serve(address=args.address, port=args.port, max_running=args.max_running, show=args.show,
              results_dir=args.results_dir, n_docs=args.n_docs, experiment=args.experiment,
              settings=dict(args.set), allow_hosts=args.allow_host)
    except WorkbenchError as exc:
        print(f"workbench serve: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
