"""An on-disk cache for datasets derived from source files (the multi-* composites), in the user cache.

A derived dataset is a pure function of its construction parameters and the content of its source files, so the
cache key is the SHA-256 of both (the source files by the digests of their decompressed content, as verified by
:mod:`mtlab.data.resolve`): a changed parameter or a changed source file gives a new key and a fresh build, never a
stale file. Each entry lies at ``<user cache>/derived/<name>-<key>.pt`` and records the description it was built
from, checked again on load. Entries are written atomically (a temporary file renamed into place), so a killed
build leaves no half-written entry; an unreadable entry is rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mtlab.data.resolve import user_cache_root

FORMAT = 1  # bump when the stored layout or a construction changes meaning


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}
"""(resolved path, size, mtime_ns) -> SHA-256 of the file's bytes, for this process."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of ``path``'s bytes (read in 4 MiB blocks), for a cache description: a source file's content is
    part of the key. Remembered for the process by path, size and modification time, so a worker that loads the
    dataset for run after run hashes its files once. Raises ``OSError`` for a file that cannot be read."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        _FILE_DIGESTS[key] = digest.hexdigest()
    return _FILE_DIGESTS[key]


def cache_dir() -> Path:
    """``<user cache>/derived``: where derived datasets are kept."""
    return user_cache_root() / "derived"


def cache_key(description: dict[str, Any]) -> str:
    """The first 24 hex digits of the SHA-256 of ``description`` (JSON with sorted keys) and the format version."""
    text = json.dumps({"format": FORMAT, **description}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_path(name: str, description: dict[str, Any]) -> Path:
    return cache_dir() / f"{name}-{cache_key(description)}.pt"


def cached_tensors(
    name: str, description: dict[str, Any], build: Callable[[], dict[str, Tensor]]
) -> tuple[dict[str, Tensor], Path, bool]:
    """The tensors ``build()`` returns for ``description``: from the cache when present, else built and stored.

    Returns (tensors, path of the entry, whether it was loaded from disk). Loaded tensors are remembered per entry
    for the life of the process and shared between callers, so nothing may modify them in place.
    """
    path = cache_path(name, description)
    if path.is_file():
        stat = path.stat()
        tensors = _load(str(path), stat.st_size, stat.st_mtime_ns, json.dumps(description, sort_keys=True))
        if tensors is not None:
            return tensors, path, True
    tensors = build()
    try:
        _store(path, description, tensors)
    except OSError as e:  # the cache only saves time: a read-only or full disk must not stop the run
        warnings.warn(f"could not cache {name} in {path.parent}: {e}", stacklevel=2)
    return tensors, path, False


@functools.lru_cache(maxsize=4)
def _load(path: str, size: int, mtime_ns: int, description: str) -> dict[str, Tensor] | None:
    """The tensors of the entry at ``path`` if it is readable and was built from ``description``; else None."""
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged or foreign file: rebuild rather than fail
        return None
    if not isinstance(entry, dict) or entry.get("description") != description:
        return None
    return entry["tensors"]


def _store(path: Path, description: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"description": json.dumps(description, sort_keys=True), "tensors": tensors}
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save(entry, f)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def cached_entries(name: str) -> list[Path]:
    """The cache entries of dataset ``name`` (any parameters), for ``mtlab data list``."""
    directory = cache_dir()
    # The key has a fixed length, so ``multi-mnist`` does not also count the entries of ``multi-mnist-sample``.
    return sorted(directory.glob(f"{name}-{'?' * 24}.pt")) if directory.is_dir() else []
