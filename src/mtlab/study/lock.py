"""The study directory's lock: one driver at a time, and whether one is at work (for a report of a live study)."""

from __future__ import annotations

import os
from pathlib import Path

from mtlab.errors import MtlabError


class StudyLock:
    """An exclusive advisory lock on ``<dir>/.lock`` (``flock``: released by the kernel even on ``kill -9``)."""

    def __init__(self, directory: Path):
        self.path = directory / ".lock"
        self.file = None

    def __enter__(self) -> StudyLock:
        import fcntl  # POSIX only: imported when a study runs

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise MtlabError(
                f"{self.path.parent}: study directory is in use by {holder}; wait for it or stop it first"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"mtlab pid {os.getpid()}")
        self.file.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self.file is not None:
            self.file.truncate(0)
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


def driver_active(directory: Path) -> bool:
    """Whether a driver holds ``directory``'s lock now. A driver killed with ``kill -9`` holds none (the kernel
    released it), so the runs it left ``running`` are not running."""
    import fcntl

    path = Path(directory) / ".lock"
    try:
        file = path.open("r")
    except OSError:
        return False
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(file, fcntl.LOCK_UN)
        return False
