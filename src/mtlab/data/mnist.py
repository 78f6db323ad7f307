"""``mnist`` and ``mnist-sample``: MNIST (LeCun et al., 1998), 28 x 28 grey digits, task ``digit`` (10 classes).

Files: the four IDX files (:mod:`mtlab.data.idx`) of the official release, checked by the SHA-256 of their
decompressed content, found or downloaded along the resolution chain (:mod:`mtlab.data.resolve`). ``mnist-sample``
is a small real sample embedded in the package (500 training and 200 test images per digit; no download).

The IDX loading here (:func:`idx_dataset`) is shared by every dataset drawn from MNIST-format files (Fashion-MNIST,
the multi-* composites, the digit pairs, Morpho-MNIST).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from mtlab.config.base import DataBase, register_dataset
from mtlab.data.sources import IDX_GZ_LIST, SOURCES, Source, idx_files, register_source
from mtlab.errors import DataError

if TYPE_CHECKING:
    from mtlab.data.dataset import Dataset, Split
    from mtlab.data.resolve import Found
    from mtlab.tasks import Task

DIGITS = tuple(str(d) for d in range(10))
SIZE = (28, 28)

MNIST = register_source(
    Source(
        name="mnist",
        dirname="mnist",
        files=idx_files(
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        hint=(
            "get them with `mtlab data fetch mnist`, or download "
            f"{IDX_GZ_LIST} from https://ossci-datasets.s3.amazonaws.com/mnist/ into a folder mnist/ under $MTLAB_DATA"
        ),
    )
)

# Written by scripts/make_embedded_sample.py: 500 training and 200 test images per digit of the real MNIST.
MNIST_SAMPLE = register_source(
    Source(
        name="mnist-sample",
        dirname="mnist-sample",
        files=idx_files(
            "291661882f80bfc1e8fc3c7ea17a7ed78362748efbfa17feda6a4618fa3c6f3a",
            "1531493183c30b840499aae3621a48abf90a239236dbfe6c2e0e7e5b4847c49a",
            "f56aa79475dd4a391c9f4367f0f10b1187e2dfe89561a280fd69f7f672f88560",
            "1e4fc73ef1dc50e315fd1026ae810c5a44e95261edee750cac85f14e6bfa79aa",
        ),
        hint="reinstall mtlab: the sample ships inside the package (src/mtlab/embedded/mnist-sample/)",
        embedded=True,
    )
)


# ---------------------------------------------------------------------------------------------- IDX datasets


def source(name: str) -> Source:
    """The registered source ``name``, looked up now (a test may have swapped in a synthetic one)."""
    return SOURCES[name]


def find(name: str, data_dir: Path | None, download: bool) -> Found:
    """The verified files of source ``name`` (embedded sources ship with the package and ignore ``data_dir``)."""
    from mtlab.data.resolve import resolve

    return resolve(source(name), data_dir, download=download)


def origin(found: Found) -> str:
    """Where the files were found, for run records: their directory, or ``embedded``."""
    return "embedded" if found.source.embedded else str(found.place.directory)


def cached(parse: Callable[..., Any], path: Path, remedy: str) -> Any:
    """``parse(path, remedy=remedy)``, remembered for as long as the file is unchanged (same size and mtime).

    A study loads the same files for every run; parsing (and decompressing) them once per process saves seconds per
    run. The parsed arrays are shared between runs, so nothing may modify them in place (nothing in mtlab does:
    splits and batches are gathered copies).
    """
    stat = path.stat()
    return _parse_once(parse, str(path), stat.st_size, stat.st_mtime_ns, remedy)


@functools.lru_cache(maxsize=16)
def _parse_once(parse: Callable[..., Any], path: str, size: int, mtime_ns: int, remedy: str) -> Any:
    return parse(Path(path), remedy=remedy)


def idx_split(found: Found, prefix: str, task: str) -> Split:
    """The ``prefix`` (``train`` / ``t10k``) split of an IDX source: images (N, 1, 28, 28) uint8, labels (N,)."""
    import torch

    from mtlab.data.dataset import Split
    from mtlab.data.idx import read_idx

    remedy = found.source.remedy
    images_path = found.path(f"{prefix}-images-idx3-ubyte")
    labels_path = found.path(f"{prefix}-labels-idx1-ubyte")
    images, labels = cached(read_idx, images_path, remedy), cached(read_idx, labels_path, remedy)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{images_path} or {labels_path} holds the wrong kind of IDX data; {remedy}")
    if len(images) != len(labels) or (len(labels) and labels.max() > 9):
        raise DataError(f"{labels_path} does not hold one label 0-9 per image of {images_path}; {remedy}")
    return Split(torch.from_numpy(images).unsqueeze(1), {task: torch.from_numpy(labels).long()})


def idx_dataset(name: str, found: Found, task: Task) -> Dataset:
    """Dataset ``name``: the official train and test splits of an IDX source, labelled for ``task``."""
    from mtlab.data.dataset import Dataset

    train = idx_split(found, "train", task.name)
    test = idx_split(found, "t10k", task.name)
    return Dataset(name, {task.name: task}, train, test, origin(found))


# --------------------------------------------------------------------------------------------------- options


@register_dataset
class MnistData(DataBase):
    """MNIST (LeCun et al., 1998): 28x28 grey digits, task ``digit``.

    ``mnist-sample`` is the small real sample embedded in the package (no download needed).
    """

    dataset: Literal["mnist", "mnist-sample"]
    offered_tasks: ClassVar[tuple[str, ...]] = ("digit",)

    def input_shape(self) -> tuple[int, ...]:
        return (1, *SIZE)

    def sources(self) -> tuple[Source, ...]:
        return (source(self.dataset),)

    def load(self, seed: int) -> Dataset:
        from mtlab.tasks import Task

        found = find(self.dataset, self.data_dir, self.download)
        return idx_dataset(self.dataset, found, Task("digit", DIGITS))
