"""Raw dataset files: what each file must contain, where it is published, how a user gets it.

Pure data (frozen dataclasses), so tests can build a :class:`Source` with synthetic files and checksums and run the
real resolution, download and extraction code against it. Each dataset module declares the sources it reads and
registers them here (:func:`register_source`), so :data:`SOURCES` - what ``mtlab data`` lists, verifies and
fetches - holds every source of the imported dataset modules (:mod:`mtlab.data.builtin` imports mtlab's own).

Files are identified by the digest of their *decompressed* content, never by the digest of a ``.gz``: the Debian
package of Fashion-MNIST rewrites the gzip headers (file name, mtime), which changes the ``.gz`` md5 but not a byte
of the data. A file may lie on disk under its name or its name plus ``.gz``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RawFile:
    """One file of a source: its decompressed name (``train-images-idx3-ubyte``, ``train``) and content digest."""

    name: str
    digest: str
    algorithm: str = "sha256"

    def hash(self, content: bytes) -> str:
        """Hex digest of ``content`` (the decompressed bytes) with this file's algorithm."""
        return hashlib.new(self.algorithm, content).hexdigest()


@dataclass(frozen=True)
class Archive:
    """A tarball that holds all of a source's files under one top folder (the source's ``dirname``)."""

    filename: str
    urls: tuple[str, ...]
    md5: str


@dataclass(frozen=True)
class Source:
    """The raw files behind one or more datasets, and everything needed to find, fetch and check them.

    Files are searched in ``<root>/<dirname>/`` for every root of the resolution chain (:mod:`mtlab.data.resolve`)
    and directly in each of ``system_dirs``. Downloads come either file by file (``mirror + name + ".gz"`` for each
    mirror in turn) or as one ``archive``. ``embedded`` sources ship inside the package and are never searched for.
    Which datasets read a source, each dataset says (:meth:`~mtlab.config.base.DataBase.sources`).
    """

    name: str
    dirname: str
    files: tuple[RawFile, ...]
    hint: str
    mirrors: tuple[str, ...] = ()
    archive: Archive | None = None
    system_dirs: tuple[Path, ...] = ()
    embedded: bool = False

    @property
    def downloadable(self) -> bool:
        return bool(self.mirrors) or self.archive is not None

    @property
    def remedy(self) -> str:
        """What to do about a damaged file of this source (ends an error message)."""
        if self.embedded:
            return "reinstall mtlab (the sample ships inside the package)"
        return f"delete it and run `mtlab data fetch {self.name}`"

    def file(self, name: str) -> RawFile:
        for raw in self.files:
            if raw.name == name:
                return raw
        raise KeyError(f"{self.name} has no file {name!r}")


IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IDX_GZ_LIST = ", ".join(f"{name}.gz" for name in IDX_NAMES)


def idx_files(*digests: str) -> tuple[RawFile, ...]:
    """The four IDX files of an MNIST-format source, in the order of :data:`IDX_NAMES`, with their SHA-256 digests."""
    return tuple(RawFile(name, digest) for name, digest in zip(IDX_NAMES, digests, strict=True))


SOURCES: dict[str, Source] = {}
"""Every registered source by name. Looked up at call time (``SOURCES[name]``), so a test can swap in a synthetic
entry with ``monkeypatch.setitem``."""


def register_source(source: Source) -> Source:
    """Make ``source`` known to ``mtlab data`` and to the loaders that look it up by name; returns it."""
    if source.name in SOURCES:
        raise ValueError(f"a source is already registered as {source.name!r}")
    SOURCES[source.name] = source
    return source
