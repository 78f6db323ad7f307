"""``mtlab analyze transfer``: its options and what it prints; the analysis is :mod:`mtlab.analysis.transfer`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtlab.analysis.transfer import write_transfer


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "transfer",
        help="linear probe of frozen trunks for a task (one row per run and trunk)",
        description="Freeze each run's trunk(s) and fit a linear probe for --task on the run's own training split "
        "(or a --fraction of it); L2 chosen on the validation split, test evaluated once. Give --run several "
        "times to compare trunks, e.g. a shared multi-task trunk against a single-task one.",
    )
    parser.add_argument("--run", type=Path, action="append", required=True, metavar="RUN_DIR", help="repeatable")
    parser.add_argument("--task", required=True, help="task to probe (any task of the runs' dataset)")
    parser.add_argument("--fraction", type=float, default=1.0, help="share of the training split (default 1)")
    parser.add_argument("--trunk", action="append", help="only these trunks (repeatable; default: every trunk)")
    parser.add_argument("--out", type=Path, help="output directory (default: first RUN_DIR/analysis/transfer)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="cpu", help="default: cpu")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    path, results = write_transfer(args)
    for r in results:
        print(f"{r.run}  trunk {r.trunk}: test accuracy {100 * r.test_acc:.2f}% (chance {100 * r.chance:.2f}%)")
    print(f"transfer: {path}")
    return 0
