"""A running ``python -m mtlab`` process, for the tests that signal, kill or watch a study driver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def mtlab_process(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mtlab", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
