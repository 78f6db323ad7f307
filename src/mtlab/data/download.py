"""Download a source's files from its official locations, with a progress bar, checking every byte before use.

Each file is streamed to a temporary file in the target directory, its decompressed content checked against the
catalogue, and only then renamed to its final name (an atomic rename: a half-downloaded or wrong file never sits
under the name the resolver looks for). Mirrors are tried in order; a file fails only when every mirror failed.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mtlab.data.cifar import extract_archive
from mtlab.data.idx import read_bytes
from mtlab.data.sources import RawFile, Source
from mtlab.errors import DataError
from mtlab.version import __version__

TIMEOUT_SECONDS = 60
_CHUNK = 1 << 16


def fetch(
    source: Source,
    root: Path,
    *,
    names: Iterable[str] | None = None,
    show_progress: bool = True,
    remedy: str | None = None,
) -> Path:
    """Download ``source`` into ``root / source.dirname`` and return that directory.

    ``names`` limits a file-by-file download to those files (an archive always comes whole). Raises
    :class:`DataError` naming the URLs tried, the reasons, and ``remedy`` (default: the source's hint), how to get
    the files by hand.
    """
    remedy = remedy or source.hint
    if not source.downloadable:
        raise DataError(f"{source.name} cannot be downloaded; {remedy}")
    directory = root / source.dirname
    progress = _progress(show_progress)
    try:
        if source.archive is not None:
            root.mkdir(parents=True, exist_ok=True)
            _fetch_archive(source, root, progress, remedy)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            wanted = set(names) if names is not None else None
            for raw in source.files:
                if wanted is None or raw.name in wanted:
                    _fetch_file(source, raw, directory, progress, remedy)
    finally:
        if progress.live.is_started:
            progress.stop()
    return directory


def download(url: str, dest: Path, progress: Progress | None = None) -> None:
    """Stream ``url`` into the file ``dest`` (overwritten), advancing a bar on ``progress`` if given.

    Raises :class:`OSError` subclasses (``urllib.error.URLError``, timeouts, a short read) on network failure.
    """
    request = urllib.request.Request(url, headers={"User-Agent": f"mtlab/{__version__}"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response, dest.open("wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if progress is not None and not progress.live.is_started:
            progress.start()  # at the first byte: a download that never connects draws nothing (not even a blank line)
        task = progress.add_task(url.rsplit("/", 1)[-1], total=total) if progress is not None else None
        received = 0
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            received += len(chunk)
            if progress is not None and task is not None:
                progress.advance(task, len(chunk))
    if total is not None and received != total:
        raise OSError(f"connection closed after {received} of {total} bytes")


def _fetch_file(source: Source, raw: RawFile, directory: Path, progress: Progress | None, remedy: str) -> None:
    """Try each mirror for ``raw.name + '.gz'`` until one delivers the right content; rename it into place."""
    failures = []
    for url in (mirror + raw.name + ".gz" for mirror in source.mirrors):
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{raw.name}.", suffix=".part.gz")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            download(url, tmp, progress)
            digest = raw.hash(read_bytes(tmp, remedy="download it again"))
            if digest == raw.digest:
                os.replace(tmp, directory / f"{raw.name}.gz")
                return
            failures.append(f"{url} delivered content with {raw.algorithm} {digest}, expected {raw.digest}")
        except (OSError, http.client.HTTPException, DataError) as e:
            failures.append(f"{url}: {_reason(e)}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(f"could not download {raw.name}.gz ({'; '.join(failures)}); {remedy}")


def _fetch_archive(source: Source, root: Path, progress: Progress | None, remedy: str) -> None:
    """Download the source's archive into ``root``, then check and unpack it (see :func:`extract_archive`)."""
    assert source.archive is not None
    failures = []
    for url in source.archive.urls:
        fd, tmp_name = tempfile.mkstemp(dir=root, prefix=f".{source.archive.filename}.", suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            download(url, tmp, progress)
            extract_archive(tmp, root, source)
            return
        except (OSError, http.client.HTTPException, DataError) as e:
            failures.append(f"{url}: {_reason(e)}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(f"could not download {source.archive.filename} ({'; '.join(failures)}); {remedy}")


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
    )
