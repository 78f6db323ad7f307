"""CIFAR-100, python version (Krizhevsky, 2009): the tarball, and the pickles inside it.

The tarball ``cifar-100-python.tar.gz`` holds ``cifar-100-python/{train,test,meta}``, each a Python 2 pickle of a
dict with bytes keys. ``train`` / ``test``: ``b'data'`` (N, 3072) uint8 - per image 1024 red, then 1024 green, then
1024 blue values, each a 32x32 row-major plane - ``b'fine_labels'`` and ``b'coarse_labels'`` (lists of N ints),
``b'filenames'``, ``b'batch_label'``. ``meta``: ``b'fine_label_names'`` (100) and ``b'coarse_label_names'`` (20).

Both the archive and the pickles are untrusted input: archive members that could land outside the target directory
are refused, and the pickles are read by an unpickler that can build only dicts, lists, strings, numbers and numpy
arrays - never call arbitrary code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from mtlab.data.idx import corrupt, read_bytes
from mtlab.data.sources import Source
from mtlab.errors import DataError

try:  # numpy >= 2 moved the module; pickles name either path.
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 pickles of protocol <= 2 store bytes as ``_codecs.encode(text, 'latin1')``; nothing else is allowed.
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"encoding {encoding!r} is not latin1")
    return text.encode("latin1")


# Everything the official pickles (numpy arrays inside dicts) and Python 3 re-pickles of them refer to.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``_ALLOWED_GLOBALS``."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


class CifarBatch(NamedTuple):
    """One split: ``images`` (N, 3, 32, 32) uint8, ``fine`` (N,) in 0-99, ``coarse`` (N,) in 0-19, both int64."""

    images: np.ndarray
    fine: np.ndarray
    coarse: np.ndarray


def load_pickle(path: Path, *, remedy: str) -> dict[bytes, Any]:
    """The dict pickled in ``path`` (keys stay bytes, as in the official files), via the restricted unpickler."""
    content = read_bytes(path, remedy=remedy)
    try:
        value = _RestrictedUnpickler(io.BytesIO(content), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{path} is not a CIFAR-100 pickle ({e}); {remedy}") from e
    if not isinstance(value, dict):
        raise DataError(f"{path} is not a CIFAR-100 pickle (holds a {type(value).__name__}, not a dict); {remedy}")
    return value


def load_batch(path: Path, *, remedy: str) -> CifarBatch:
    """Parse the ``train`` or ``test`` pickle at ``path``."""
    d = load_pickle(path, remedy=remedy)
    data = _field(d, b"data", path, remedy)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise corrupt(path, f"b'data' is not a (N, 3072) uint8 array: {getattr(data, 'shape', type(data))}", remedy)
    n = data.shape[0]
    labels = {}
    for key, classes in ((b"fine_labels", 100), (b"coarse_labels", 20)):
        y = np.asarray(_field(d, key, path, remedy), dtype=np.int64)
        if y.shape != (n,) or (n and (y.min() < 0 or y.max() >= classes)):
            raise corrupt(path, f"{key!r} is not {n} labels in 0-{classes - 1}", remedy)
        labels[key] = y
    # (N, 3072) -> (N, 3, 32, 32): channel planes first, each plane row-major.
    images = np.ascontiguousarray(data.reshape(n, 3, 32, 32))
    return CifarBatch(images, labels[b"fine_labels"], labels[b"coarse_labels"])


def load_meta(path: Path, *, remedy: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The 100 fine and 20 coarse class names stored in the ``meta`` pickle at ``path``."""
    d = load_pickle(path, remedy=remedy)
    names = []
    for key, count in ((b"fine_label_names", 100), (b"coarse_label_names", 20)):
        value = _field(d, key, path, remedy)
        if not isinstance(value, list) or len(value) != count or not all(isinstance(v, bytes) for v in value):
            raise corrupt(path, f"{key!r} is not a list of {count} names", remedy)
        names.append(tuple(v.decode("utf-8") for v in value))
    return names[0], names[1]


def _field(d: dict[bytes, Any], key: bytes, path: Path, remedy: str) -> Any:
    if key not in d:
        raise corrupt(path, f"no {key!r} entry", remedy)
    return d[key]


# ------------------------------------------------------------------------------------------------------ archive


def extract_archive(tarball: Path, root: Path, source: Source) -> Path:
    """Check and unpack ``tarball`` (the source's archive) so its files land in ``root / source.dirname``.

    The tarball's md5 must equal the catalogue's, every member must be a plain file or directory under the top
    folder (no absolute paths, ``..``, links or devices), and each extracted file must match its catalogue digest;
    anything else raises :class:`DataError` and leaves ``root`` untouched. Unpacks into a temporary directory next
    to the target and renames it into place, replacing an older copy. Returns the target directory.
    """
    assert source.archive is not None, f"{source.name} has no archive"
    remedy = source.remedy
    actual = _file_md5(tarball)
    if actual != source.archive.md5:
        raise DataError(f"{tarball} has md5 {actual}, expected {source.archive.md5}; {remedy}")
    target = root / source.dirname
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{source.dirname}-") as tmp:
        try:
            with tarfile.open(tarball, "r:*") as tar:
                wanted = _checked_members(tar, tarball, source)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=wanted, filter="data")
                else:  # pragma: no cover - Python without extraction filters; members were checked above
                    tar.extractall(tmp, members=wanted)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DataError(f"{tarball} cannot be unpacked ({e}); {remedy}") from e
        unpacked = Path(tmp) / source.dirname
        for raw in source.files:
            digest = raw.hash(read_bytes(unpacked / raw.name, remedy=remedy))
            if digest != raw.digest:
                raise DataError(
                    f"{tarball} member {source.dirname}/{raw.name} has {raw.algorithm} {digest}, "
                    f"expected {raw.digest}; {remedy}"
                )
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)
    return target


def _checked_members(tar: tarfile.TarFile, tarball: Path, source: Source) -> list[tarfile.TarInfo]:
    """The members holding the source's files, after refusing the whole archive if any member is unsafe."""
    wanted = [f"{source.dirname}/{raw.name}" for raw in source.files]
    found: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        name = PurePosixPath(member.name)
        unsafe = (
            name.is_absolute()
            or ".." in name.parts
            or not (member.isfile() or member.isdir())
            or name.parts[:1] != (source.dirname,)
        )
        if unsafe:
            raise DataError(
                f"{tarball} holds an unsafe or unexpected member {member.name!r}; refusing to unpack it - "
                f"download the official archive with `mtlab data fetch {source.name}`"
            )
        if member.isfile() and str(name) in wanted:
            found[str(name)] = member
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DataError(f"{tarball} lacks {', '.join(missing)}; {source.remedy}")
    return [found[name] for name in wanted]


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
