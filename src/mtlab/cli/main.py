"""The ``mtlab`` command: parse arguments, call the library, print.

User errors exit 2 with one ``mtlab: error:`` line per problem (at most :data:`MAX_ERROR_LINES`, then a count).
^C exits 130 and SIGTERM (schedulers, ``docker stop``) exits 143; both abandon the run in flight the same way, so
the store stays consistent, no run is left ``running``, and the same command resumes (the message says how many
finished runs were kept).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import NoReturn

from mtlab import __version__
from mtlab.cli import (
    analyze_cmd,
    data_cmd,
    export_cmd,
    report_cmd,
    search_cmd,
    study_cmd,
    tasks_cmd,
    train_cmd,
    weightings_cmd,
)
from mtlab.errors import MtlabError, UserCodeError

# Each command module offers ``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. Importing
# them and registering stays light (no torch, pandas or matplotlib): that is all `mtlab --help` waits for.
COMMANDS = (train_cmd, study_cmd, report_cmd, export_cmd, analyze_cmd, search_cmd, data_cmd, tasks_cmd, weightings_cmd)
MAX_ERROR_LINES = 10


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, like ^C: every ``finally`` and ``with`` unwinds (locks released,
    open transactions rolled back), and nothing catches it as a crash of the run (it is not an ``Exception``)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


class Parser(argparse.ArgumentParser):
    """argparse, with misuse reported like every other user error: one line, exit code 2 (the usage is in --help);
    and with parts built on first use, so that parsing stays light (see :meth:`build_when_used`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._builders: list[Callable[[Parser], None]] = []

    def build_when_used(self, builder: Callable[[Parser], None]) -> None:
        """Call ``builder(self)`` just before this parser first parses: for a command, only when it is the one named
        on the command line (argparse hands it the rest of the arguments then). ``mtlab analyze`` builds its
        analyses this way, as describing them imports torch - which `mtlab --help` must not wait for."""
        self._builders.append(builder)

    def parse_known_args(self, args=None, namespace=None):
        while self._builders:
            self._builders.pop(0)(self)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        print_error(f"{message} (see `{self.prog} --help`)")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mtlab", description="Run, compare and explain multi-task learning experiments.")
    parser.add_argument("--version", action="version", version=f"mtlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def _owners(parser: argparse.ArgumentParser, command: str, extra: list[str]) -> str:
    """``; --figure-format is an option of `mtlab report` and `mtlab run`, not of `mtlab export```: for each unknown
    option that another command has, which commands do (of those already built: none is built just for this)."""
    commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    said: list[str] = []
    for option in dict.fromkeys(e.split("=", 1)[0] for e in extra if e.startswith("--")):
        owners = {f"`{sub.prog}`" for name, sub in commands.items() if option in sub._option_string_actions}
        if owners:
            listed = sorted(owners)
            owned = listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} and {listed[-1]}"
            said.append(f"{option} is an option of {owned}, not of `{parser.prog} {command}`")
    return "; " + "; ".join(said) if said else ""


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
            parser.error(f"unrecognized arguments: {' '.join(extra)}{_owners(parser, args.command, extra)}")
        args.overrides = [*args.overrides, *extra]
    with _sigterm_as_exception():
        try:
            return int(args.func(args) or 0)
        except MtlabError as e:
            print_error(str(e))
            if isinstance(e, UserCodeError) and e.frames:
                print(e.frames, end="", file=sys.stderr)  # where in the user's own code, as Python shows it
            return 2
        except OSError as e:
            if e.filename is None:
                raise  # not about a file the user named: a bug, keep its traceback
            # A path the user gave that the file system refuses (not a directory, permission, disk full).
            print_error(f"{e.filename}: {e.strerror or e}")
            return 2
        except Terminated as stop:
            resume = "run the same command again to resume"
            print(stopped_message("terminated (SIGTERM)", stop, resume), file=sys.stderr)
            return 143
        except KeyboardInterrupt as stop:
            print(stopped_message("interrupted", stop), file=sys.stderr)
            return 130


def stopped_message(what: str, stop: KeyboardInterrupt, otherwise: str = "") -> str:
    """``mtlab: interrupted - 12 runs kept; run the same command to resume`` when the command that stopped says what
    it kept (a study does), else ``mtlab: interrupted`` (and ``otherwise``, what to do)."""
    if not str(stop):
        return f"mtlab: {what}" + (f"; {otherwise}" if otherwise else "")
    return f"mtlab: {what} - {stop}; run the same command to resume"


def print_error(message: str) -> None:
    """One ``mtlab: error:`` line per line of ``message``; past :data:`MAX_ERROR_LINES`, only a count."""
    lines = [line for line in message.splitlines() if line.strip()] or ["(no message)"]
    for line in lines[:MAX_ERROR_LINES]:
        print(f"mtlab: error: {line}", file=sys.stderr)
    if len(lines) > MAX_ERROR_LINES:
        rest = len(lines) - MAX_ERROR_LINES
        print(f"mtlab: error: ... and {rest} more problem{'s' if rest > 1 else ''}", file=sys.stderr)


@contextlib.contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a command runs (only the main thread may set handlers)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (mtlab called from a worker thread): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
