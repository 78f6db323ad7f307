"""``mtlab analyze features``: its options and what it prints; the analysis is :mod:`mtlab.analysis.features`."""

from __future__ import annotations

import argparse

from mtlab.analysis.features import write_features
from mtlab.cli.analyze import add_input_arguments, add_run_arguments


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "features",
        help="feature maps of every conv layer for chosen test images",
        description="Draw the feature maps (conv outputs) of each conv layer for test images chosen by index "
        "(--index) or as the first test example of a class of --task (--class, a name or a label). "
        "Default: test examples 0 and 1.",
    )
    add_run_arguments(parser, "features")
    add_input_arguments(parser)
    parser.add_argument("--limit", type=int, default=64, help="at most this many maps per layer (default 64)")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    print(f"features: {write_features(args)}")
    return 0
