"""``mtlab analyze filters``: its options and what it prints; the analysis is :mod:`mtlab.analysis.filters`."""

from __future__ import annotations

import argparse

from mtlab.analysis.filters import write_filters
from mtlab.cli.analyze import add_run_arguments


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "filters",
        help="convolution kernels as images",
        description="Draw each conv layer's kernels: whole kernels for the first layer, the first input channel of "
        "each filter for deeper layers (or all of them with --all-channels).",
    )
    add_run_arguments(parser, "filters")
    parser.add_argument("--all-channels", action="store_true", help="deeper layers: every input channel")
    parser.add_argument("--limit", type=int, default=64, help="at most this many filters per layer (default 64)")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    out = write_filters(args)
    print(f"filters: {out}")
    return 0
