"""The options of ``mtlab analyze``'s subcommands, one module each; the analyses themselves are :mod:`mtlab.analysis`
(they take the parsed options and never parse a command line)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_run_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """The options every picture command shares: the run, the output, the trunk, the layers, the seed, the device."""
    parser.add_argument("--run", type=Path, required=True, metavar="RUN_DIR", help="a finished run directory")
    parser.add_argument("--out", type=Path, help=f"output directory (default: RUN_DIR/analysis/{command})")
    parser.add_argument("--task", help="task whose head / class names to use (default: the run's first task)")
    parser.add_argument("--trunk", help="trunk to analyse (default: the task's own trunk, else the shared one)")
    parser.add_argument(
        "--layer",
        action="append",
        metavar="N|NAME",
        help="conv layer by position from 1 or module name (repeat; default: every conv layer)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="cpu", help="default: cpu")


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The test images a picture command looks at: by index, or the first example of a class."""
    parser.add_argument("--index", type=int, action="append", default=[], help="test-split index (repeat)")
    parser.add_argument(
        "--class", dest="classes", action="append", default=[], metavar="CLASS", help="class name or label (repeat)"
    )
