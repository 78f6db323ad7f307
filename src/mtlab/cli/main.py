"""The ``mtlab`` command: parse arguments, call the library, print. User errors exit 2 with one line."""

from __future__ import annotations

import argparse
import sys
import warnings

from mtlab import __version__
from mtlab.cli import (
    analyze_cmd,
    data_cmd,
    export_cmd,
    report_cmd,
    search_cmd,
    study_cmd,
    train_cmd,
    weightings_cmd,
)
from mtlab.errors import MtlabError

# Each command module offers ``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
COMMANDS = (train_cmd, study_cmd, report_cmd, export_cmd, analyze_cmd, search_cmd, data_cmd, weightings_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtlab", description="Run, compare and explain multi-task learning experiments."
    )
    parser.add_argument("--version", action="version", version=f"mtlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"mtlab: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # fallbacks (precision, compile) are news for the user, not bugs
    parser = build_parser()
    # KEY=VALUE overrides may follow options (`mtlab run x --out d train.epochs=2`), which argparse alone does not
    # allow for a trailing positional list, so leftovers join the command's overrides (which
    # reject anything not shaped KEY=VALUE with a one-line error).
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        return int(args.func(args) or 0)
    except MtlabError as e:
        print(f"mtlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtlab: interrupted", file=sys.stderr)
        return 130
