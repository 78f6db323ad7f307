"""The ``mtlab`` command: parse arguments, call the library, print. User errors exit 2 with one line."""

from __future__ import annotations

import argparse
import sys

from mtlab import __version__
from mtlab.cli import data_cmd, train_cmd
from mtlab.errors import MtlabError

# Each command module offers ``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
COMMANDS = (train_cmd, data_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtlab", description="Run, compare and explain multi-task learning experiments."
    )
    parser.add_argument("--version", action="version", version=f"mtlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MtlabError as e:
        print(f"mtlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtlab: interrupted", file=sys.stderr)
        return 130
