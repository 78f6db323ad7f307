"""Command-line flags for where runs train (``--workers``, ``--executor``, ``--address``), shared by ``mtlab run`` and
``mtlab search``."""

from __future__ import annotations

import argparse
from typing import Any

from mtlab.errors import ConfigError
from mtlab.execute import EXECUTORS, executor_takes_address


def add_executor_options(parser: argparse.ArgumentParser, what: str = "seed groups", default: str = "auto") -> None:
    parser.add_argument(
        "--workers",
        default=default,
        metavar="N|auto",
        help=f"train {what} in N worker processes side by side, one CPU thread each (auto = the CPU cores this "
        f"process may use, or one per GPU; 1 = in this process with torch's threads; default {default})",
    )
    parser.add_argument(
        "--executor",
        default="local",
        help="local = this machine (default); ray = a Ray cluster, each group a Ray task (pip install 'mtlab[ray]'); "
        "or an executor an installed plug-in registers (mtlab.executors entry points)",
    )
    parser.add_argument(
        "--address",
        help="with --executor ray: auto (the cluster this machine joined with `ray start`) or HOST:PORT of its head "
        "(default: start a private Ray instance on this machine)",
    )


def executor_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """``executor``, ``workers`` and ``address`` for :func:`~mtlab.study.runner.run_study`, checked."""
    workers: int | str = args.workers
    if workers != "auto":
        try:
            workers = int(workers)
        except ValueError:
            raise ConfigError(f"--workers: a positive number or auto, not {args.workers!r}") from None
        if workers <= 0:
            raise ConfigError(f"--workers: must be positive, got {workers}")
    if args.address is not None and not executor_takes_address(args.executor):
        takers = [name for name in EXECUTORS.names() if executor_takes_address(name)]
        raise ConfigError(f"--address: only with --executor {' or '.join(takers)}")
    return {"executor": args.executor, "workers": workers, "address": args.address}
