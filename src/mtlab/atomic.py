"""Write files so that a kill at any moment leaves either the old file or the new one, never half of one.

Every file a later command trusts (a run's config, metrics and checkpoint, a study's reports and exports) is written
under a temporary name in the same directory, flushed to disk, and renamed into place: ``os.replace`` is atomic
within one file system, and the flush first means a power cut after the rename cannot leave a named but empty
file. The temporary name starts with a dot and keeps the suffix, so globs like ``*.png`` never see it and writers
that pick a format from the suffix (matplotlib, numpy) still do.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it replaces ``path`` in one step.

    On any error (or ^C / SIGTERM) the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield temporary
        with temporary.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def remove_leftovers(directory: Path | str) -> None:
    """Delete temporary files a killed writer left in ``directory`` (``replacing`` cannot clean up after SIGKILL)."""
    for leftover in Path(directory).glob(".*.tmp-*"):
        leftover.unlink(missing_ok=True)


def write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """``Path(path).write_text(text)``, atomically."""
    with replacing(path) as temporary:
        temporary.write_text(text, encoding=encoding)


def write_bytes(path: Path | str, content: bytes) -> None:
    """``Path(path).write_bytes(content)``, atomically."""
    with replacing(path) as temporary:
        temporary.write_bytes(content)
