"""Find a source's files on this machine - or download them - and make sure they hold the right bytes.

The chain, first match wins:

1. the explicit ``data_dir`` of the data config: ``<data_dir>/<dirname>/``, then ``<data_dir>/`` itself;
2. ``$MTLAB_DATA`` (a root, or several separated by ``os.pathsep``): ``<root>/<dirname>/``;
3. the user cache ``$XDG_CACHE_HOME/mtlab`` (default ``~/.cache/mtlab``): ``<cache>/<dirname>/``;
4. the source's system directories (e.g. ``/usr/share/datasets/fashion-mnist`` from a Debian package);
5. a download into the user cache, unless the config says ``download: false`` or ``MTLAB_OFFLINE=1``.

A place counts when it holds every file of the source (each as ``name`` or ``name.gz``); a place holding only some
is reported but skipped. Files are checked by the digest of their decompressed content; digests are remembered
per (path, size, mtime) for the life of the process, so loading the same data twice hashes it once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from mtlab.data.download import fetch
from mtlab.data.idx import read_bytes
from mtlab.data.sources import RawFile, Source
from mtlab.errors import DataError

DATA_ENV = "MTLAB_DATA"
OFFLINE_ENV = "MTLAB_OFFLINE"

# (resolved path, size, mtime_ns, algorithm) -> hex digest of the decompressed content.
_DIGESTS: dict[tuple[str, int, int, str], str] = {}


@dataclass(frozen=True)
class Place:
    """A directory that may hold a source's files, and why it is looked at (``data_dir``, ``$MTLAB_DATA``, ...)."""

    directory: Path
    why: str

    def __str__(self) -> str:
        return f"{self.directory} ({self.why})"


@dataclass(frozen=True)
class Found:
    """The files of ``source`` present at ``place``: ``paths[i]`` for ``source.files[i]``, None where missing."""

    source: Source
    place: Place
    paths: tuple[Path | None, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(raw.name for raw, path in zip(self.source.files, self.paths, strict=True) if path is None)

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def state(self) -> str:
        return "complete" if self.complete else f"incomplete: no {', '.join(self.missing)}"

    def path(self, name: str) -> Path:
        """Where file ``name`` of the source lies (``name`` or ``name.gz``)."""
        path = self.paths[self.source.files.index(self.source.file(name))]
        if path is None:
            raise DataError(f"{self.place.directory} has no {name} or {name}.gz; {self.source.hint}")
        return path


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one file: ``ok``, ``mismatch`` (wrong digest), ``corrupt`` (unreadable) or ``missing``."""

    name: str
    path: Path | None
    status: Literal["ok", "mismatch", "corrupt", "missing"]
    detail: str = ""


def resolve(
    source: Source, data_dir: Path | None = None, *, download: bool = True, show_progress: bool = True
) -> Found:
    """The verified, complete files of ``source``: the first complete place of the chain, else a fresh download.

    Raises :class:`DataError` if a file's content is wrong (naming the file, expected and actual digest), or if
    the files are nowhere and cannot be downloaded (listing every place looked and how to get the files).
    """
    found = locate(source, data_dir)
    if found is not None and found.complete:
        return verified(found)
    if download and not offline() and source.downloadable:
        cache = user_cache_root()
        cached = find_at(source, Place(cache / source.dirname, "user cache"))
        fetch(source, cache, names=cached.missing if cached is not None else None, show_progress=show_progress)
        downloaded = find_at(source, Place(cache / source.dirname, "downloaded"))
        assert downloaded is not None, f"download of {source.name} left no files"
        return verified(downloaded)
    raise DataError(_not_found_message(source, data_dir, download))


def locate(source: Source, data_dir: Path | None = None) -> Found | None:
    """The first place holding all of the source's files; else the first holding some; else None. No hashing."""
    partial = None
    for place in places(source, data_dir):
        found = find_at(source, place)
        if found is not None and found.complete:
            return found
        partial = partial or found
    return partial


def places(source: Source, data_dir: Path | None = None) -> list[Place]:
    """Every directory the chain looks in for ``source``, in order (the embedded directory for embedded sources)."""
    if source.embedded:
        return [Place(embedded_dir(source), "embedded")]
    return search_places((source.dirname,), data_dir, source.system_dirs)


def search_places(
    dirnames: tuple[str, ...], data_dir: Path | None = None, system_dirs: tuple[Path, ...] = ()
) -> list[Place]:
    """The chain's directories for files kept in a folder named one of ``dirnames`` under each root: in
    ``data_dir`` (the folder, then ``data_dir`` itself), ``$MTLAB_DATA``, the user cache, then ``system_dirs``."""
    found: list[Place] = []
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        found += [Place(data_dir / name, "data_dir") for name in dirnames] + [Place(data_dir, "data_dir")]
    for root in os.environ.get(DATA_ENV, "").split(os.pathsep):
        if root:
            found += [Place(Path(root).expanduser() / name, f"${DATA_ENV}") for name in dirnames]
    found += [Place(user_cache_root() / name, "user cache") for name in dirnames]
    found += [Place(d, "system") for d in system_dirs]
    return found


def find_at(source: Source, place: Place) -> Found | None:
    """The source's files at ``place`` (raw name preferred over ``.gz``), or None if it holds none of them."""
    paths = []
    for raw in source.files:
        candidates = (place.directory / raw.name, place.directory / f"{raw.name}.gz")
        paths.append(next((p for p in candidates if p.is_file()), None))
    return Found(source, place, tuple(paths)) if any(p is not None for p in paths) else None


def verified(found: Found) -> Found:
    """``found``, after checking every file's content; raises :class:`DataError` on the first bad file."""
    for raw, path in zip(found.source.files, found.paths, strict=True):
        assert path is not None, f"{raw.name} missing at {found.place}"
        actual = digest(path, raw, remedy=found.source.remedy)
        if actual != raw.digest:
            raise DataError(
                f"{path} has the wrong content ({raw.algorithm} of the decompressed data is {actual}, expected "
                f"{raw.digest}); {found.source.remedy}"
            )
    return found


def verify(found: Found) -> list[FileCheck]:
    """A verdict for each file of the source at ``found.place``, without raising."""
    checks = []
    for raw, path in zip(found.source.files, found.paths, strict=True):
        if path is None:
            checks.append(FileCheck(raw.name, None, "missing", f"no {raw.name} or {raw.name}.gz"))
            continue
        try:
            actual = digest(path, raw, remedy=found.source.remedy)
        except DataError as e:
            checks.append(FileCheck(raw.name, path, "corrupt", str(e)))
            continue
        if actual == raw.digest:
            checks.append(FileCheck(raw.name, path, "ok"))
        else:
            checks.append(FileCheck(raw.name, path, "mismatch", f"{raw.algorithm} {actual}, expected {raw.digest}"))
    return checks


def digest(path: Path, raw: RawFile, *, remedy: str) -> str:
    """The digest of the decompressed content of ``path`` with ``raw``'s algorithm; computed once per process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, raw.algorithm)
    if key not in _DIGESTS:
        _DIGESTS[key] = raw.hash(read_bytes(path, remedy=remedy))
    return _DIGESTS[key]


def offline() -> bool:
    """``MTLAB_OFFLINE`` set to a true value: never download."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/mtlab``, or ``~/.cache/mtlab`` when the variable is unset or not an absolute path."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "mtlab"


def embedded_dir(source: Source) -> Path:
    """The package-data directory of an embedded source (``mtlab/embedded/<dirname>``)."""
    return Path(str(resources.files("mtlab") / "embedded" / source.dirname))


def by_hand(source: Source, data_dir: Path | None = None) -> str:
    """How to put ``source``'s files in place without mtlab's download: which files, where they are published,
    and the directories :func:`resolve` looks in (ends the message of a download that cannot happen)."""
    looked = ", ".join(str(place) for place in places(source, data_dir))
    if source.archive is not None:
        names = ", ".join(raw.name for raw in source.files)
        get = f"download {source.archive.urls[0]}, unpack it and put {names} (in its folder {source.dirname}/)"
    else:
        names = ", ".join(f"{raw.name}.gz" for raw in source.files)
        get = f"download {names}" + (f" from {source.mirrors[0]}" if source.mirrors else "") + " and put them"
    return f"to get {source.name} by hand, {get} in one of the directories mtlab looks in: {looked}"


def _not_found_message(source: Source, data_dir: Path | None, download: bool) -> str:
    looked = []
    for place in places(source, data_dir):
        found = find_at(source, place)
        looked.append(str(place) if found is None else f"{place} [{found.state}]")
    if not source.downloadable:
        why = "it cannot be downloaded"
    elif not download:
        why = "downloads are off (download: false)"
    else:
        why = f"downloads are off ({OFFLINE_ENV}={os.environ.get(OFFLINE_ENV)})"
    return f"{source.name} files not found; looked in {'; '.join(looked)}; {why}; {source.hint}"
