"""``mtlab analyze maximize``: its options and what it prints; the analysis is :mod:`mtlab.analysis.maximize`."""

from __future__ import annotations

import argparse

from mtlab.analysis.maximize import AscentSettings, write_maximize
from mtlab.cli.analyze import add_run_arguments


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "maximize",
        help="activation maximisation: the input each filter (or class) responds to most",
        description="Gradient ascent from seeded noise on the input, maximising each filter's mean activation "
        "(one grid per conv layer), with L2 and total-variation penalties; with --classes also each class logit of "
        "the --task head.",
    )
    add_run_arguments(parser, "maximize")
    parser.add_argument("--classes", action="store_true", help="also maximise each class logit of --task's head")
    parser.add_argument("--limit", type=int, default=32, help="at most this many filters per layer (default 32)")
    defaults = AscentSettings()
    parser.add_argument("--steps", type=int, default=defaults.steps, help=f"ascent steps (default {defaults.steps})")
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"Adam step size (default {defaults.lr})")
    parser.add_argument("--l2", type=float, default=defaults.l2, help=f"L2 penalty weight (default {defaults.l2})")
    parser.add_argument("--tv", type=float, default=defaults.tv, help=f"total-variation weight (default {defaults.tv})")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    print(f"maximize: {write_maximize(args)}")
    return 0
