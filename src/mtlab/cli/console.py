"""The rich console the commands print through.

On a terminal: its width, its colours. Piped or redirected (a log file, ``| less``, a CI job), rich would assume 80
columns and wrap every table to fit; a log has no width, so there each table is drawn as wide as its contents.
"""

from __future__ import annotations

from rich.console import Console

LOG_WIDTH = 1000  # piped: room for any row; rich draws a table only as wide as its contents need


def make_console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr): the terminal's width on a terminal, :data:`LOG_WIDTH` otherwise."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=LOG_WIDTH)
