"""The IDX format of MNIST and Fashion-MNIST (LeCun et al.), gzip-compressed or raw.

An IDX file is a big-endian header - a magic number ``0x0000TTDD`` (TT = element type, DD = number of dimensions),
then DD sizes as uint32 - followed by exactly prod(sizes) elements. Only the two kinds these datasets use are
accepted: 2049 (``0x0801``, uint8, 1-D labels (N,)) and 2051 (``0x0803``, uint8, 3-D images (N, H, W)).
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from mtlab.errors import DataError

IDX_LABELS = 2049
IDX_IMAGES = 2051
_NDIM = {IDX_LABELS: 1, IDX_IMAGES: 3}
_DEFAULT_REMEDY = "delete it and run `mtlab data fetch mnist`"


def read_bytes(path: Path, *, remedy: str = _DEFAULT_REMEDY) -> bytes:
    """The decompressed content of ``path``: gunzipped if its name ends in ``.gz``, else as stored.

    A truncated stream, a CRC or length mismatch in the gzip trailer, or an unreadable file raise :class:`DataError`
    naming the file and ending with ``remedy``.
    """
    try:
        stored = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path} cannot be read ({e.strerror or e}); {remedy}") from e
    if path.suffix != ".gz":
        return stored
    try:
        return gzip.decompress(stored)
    except EOFError as e:
        raise corrupt(path, "the gzip stream ends early", remedy) from e
    except (gzip.BadGzipFile, zlib.error) as e:
        raise corrupt(path, str(e), remedy) from e


def parse_idx(content: bytes, path: Path, *, remedy: str = _DEFAULT_REMEDY) -> np.ndarray:
    """The uint8 array stored in ``content`` (the decompressed bytes of ``path``, named in errors).

    Returns labels (N,) for magic 2049 and images (N, H, W) for magic 2051, as a writable copy.
    """
    if len(content) < 4:
        raise corrupt(path, f"{len(content)} bytes, too short for an IDX header", remedy)
    magic = int.from_bytes(content[:4], "big")
    if magic not in _NDIM:
        raise corrupt(path, f"magic number {magic:#010x}, expected {IDX_LABELS} or {IDX_IMAGES}", remedy)
    ndim = _NDIM[magic]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise corrupt(path, f"{len(content)} bytes, too short for a {ndim}-D IDX header", remedy)
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = len(content) - header
    if payload != math.prod(shape):
        raise corrupt(path, f"shape {shape} needs {math.prod(shape)} data bytes, found {payload}", remedy)
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape).copy()


def read_idx(path: Path, *, remedy: str = _DEFAULT_REMEDY) -> np.ndarray:
    """Parse the IDX file at ``path`` (``.gz`` or raw): labels (N,) or images (N, H, W), uint8."""
    return parse_idx(read_bytes(path, remedy=remedy), path, remedy=remedy)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write uint8 labels (N,) or images (N, H, W) as IDX, gzip-compressed if ``path`` ends in ``.gz``.

    The gzip header stores no file name and mtime 0, so equal arrays give byte-identical files.
    """
    magic = {1: IDX_LABELS, 3: IDX_IMAGES}.get(array.ndim)
    if array.dtype != np.uint8 or magic is None:
        raise ValueError(f"IDX holds uint8 arrays of 1 or 3 dimensions, got {array.dtype} {array.shape}")
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    content = header + np.ascontiguousarray(array).tobytes()
    if path.suffix == ".gz":
        content = gzip.compress(content, compresslevel=9, mtime=0)
    path.write_bytes(content)


def corrupt(path: Path, reason: str, remedy: str) -> DataError:
    """The one-line error for a damaged data file."""
    return DataError(f"{path} is truncated or corrupt ({reason}); {remedy}")
