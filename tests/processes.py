"""A running ``python -m mtlab`` process, for the tests that signal, kill or watch a study driver."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path


def _default_sigint() -> None:
    """Run in the child before mtlab starts: SIGINT's default action, whatever the test process has. A test run
    started as a shell's background job ignores SIGINT, and a child would inherit that (Python keeps an ignored
    SIGINT ignored, as mtlab does: a program started in the background is not for the terminal's ^C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def mtlab_process(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mtlab", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def run_statuses(directory: Path) -> dict[str, str]:
    """Run statuses straight from SQLite (a driver may be writing; a store not created yet has none)."""
    path = directory / "results.sqlite"
    if not path.exists():
        return {}
    db = sqlite3.connect(path, timeout=30)
    try:
        return dict(db.execute("SELECT run_id, status FROM runs"))
    except sqlite3.OperationalError:  # the schema is not there yet
        return {}
    finally:
        db.close()
