"""Serve the workbench dashboard (:mod:`widgets.app`): ``workbench serve``, ``make serve``, ``python -m widgets.serve``.

>>> from widgets.serve import serve
>>> serve(port=5006)                          # blocks; open http://127.0.0.1:5006   # doctest: +SKIP
>>> server = serve(port=0, threaded=True)     # in the background (tests, benchmarks) # doctest: +SKIP

Binds 127.0.0.1 by default. Binding another address exposes a training server to that network: each
visitor can start CPU-heavy work (bounded by ``max_running``) and write files inside ``results_dir``.
"""

from __future__ import annotations

import argparse
import os

import panel as pn


def set_torch_threads(max_running: int) -> int:
    """Give each concurrent training an equal share of the cores (``WORKBENCH_TORCH_THREADS`` overrides).

    Oversubscribed OpenMP threads are far worse than fewer threads: on a 2-core machine with other work,
    gpt2-1m ran 6 steps in 12.5 s with 2 threads against 0.9 s with 1.
    """
    import torch

    threads = int(os.environ.get("WORKBENCH_TORCH_THREADS", "0")) or max(1, (os.cpu_count() or 1) // max(1, max_running))
    torch.set_num_threads(threads)
    return threads


def serve(address: str = "127.0.0.1", port: int = 5006, max_running: int = 2, show: bool = False,
          results_dir: str | None = None, n_docs: int | None = None, threaded: bool = False, **kwargs):
    """Serve the dashboard; blocks unless ``threaded`` (then returns the server thread, ``.stop()`` it).

    ``max_running`` caps concurrently training runs across all sessions; ``results_dir`` is the only
    folder visitors can write to; ``n_docs`` sizes the embedded experiment's data. Extra keyword
    arguments go to :func:`panel.serve`.
    """
    from .app import CONFIG, SLOTS, create_app

    CONFIG.max_running = max_running
    SLOTS.max_running = max_running
    if results_dir is not None:
        CONFIG.results_dir = results_dir
    if n_docs is not None:
        CONFIG.n_docs = n_docs
    set_torch_threads(max_running)
    pn.extension()
    origins = [f"{address}:{port}"]
    if address in ("127.0.0.1", "localhost"):
        origins += [f"localhost:{port}", f"127.0.0.1:{port}"]
    kwargs.setdefault("websocket_origin", origins)
    kwargs.setdefault("title", "workbench")
    return pn.serve({"/": create_app}, address=address, port=port, show=show, threaded=threaded, **kwargs)


def main(argv: list[str] | None = None) -> None:
    """``python -m widgets.serve [--address A] [--port P] [--max-running N] [--show]``."""
    parser = argparse.ArgumentParser(prog="workbench serve", description="Serve the workbench dashboard.")
    parser.add_argument("--address", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only).")
    parser.add_argument("--port", type=int, default=5006, help="Port (default 5006).")
    parser.add_argument("--max-running", type=int, default=2, help="Trainings allowed at once across sessions (default 2).")
    parser.add_argument("--results-dir", default=None, help="Folder visitors may save to (default results/dashboard).")
    parser.add_argument("--n-docs", type=int, default=None, help="Documents of the default experiment's data (default 300).")
    parser.add_argument("--show", action="store_true", help="Open a browser tab.")
    args = parser.parse_args(argv)
    print(f"workbench dashboard on http://{args.address}:{args.port}/", flush=True)
    serve(address=args.address, port=args.port, max_running=args.max_running, show=args.show,
          results_dir=args.results_dir, n_docs=args.n_docs)


if __name__ == "__main__":
    main()
