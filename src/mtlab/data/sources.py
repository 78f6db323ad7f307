"""The catalogue of raw dataset files: what each file must contain, where it is published, how a user gets it.

Pure data (frozen dataclasses), so tests can build a :class:`Source` with synthetic files and checksums and run the
real resolution, download and extraction code against it.

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
    """

    name: str
    dirname: str
    files: tuple[RawFile, ...]
    hint: str
    datasets: tuple[str, ...]
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


_IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _idx_files(*digests: str) -> tuple[RawFile, ...]:
    """The four IDX files, in the order of ``_IDX_NAMES``, with their SHA-256 digests."""
    return tuple(RawFile(name, digest) for name, digest in zip(_IDX_NAMES, digests, strict=True))


_GZ_LIST = ", ".join(f"{name}.gz" for name in _IDX_NAMES)

MNIST = Source(
    name="mnist",
    dirname="mnist",
    files=_idx_files(
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    hint=(
        "get them with `mtlab data fetch mnist`, or download "
        f"{_GZ_LIST} from https://ossci-datasets.s3.amazonaws.com/mnist/ into a folder mnist/ under $MTLAB_DATA"
    ),
    datasets=("mnist", "mnist-pairs", "multi-mnist", "multi-fashion-mnist"),
)

FASHION_MNIST = Source(
    name="fashion-mnist",
    dirname="fashion-mnist",
    files=_idx_files(
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    hint=(
        "get them with `mtlab data fetch fashion-mnist`, or `apt-get install dataset-fashion-mnist` (Debian), "
        f"or download {_GZ_LIST} from http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
        "into a folder fashion-mnist/ under $MTLAB_DATA"
    ),
    datasets=("fashion-mnist", "multi-fashion", "multi-fashion-mnist"),
)

# Written by scripts/make_embedded_sample.py: 300 training and 100 test images per class of the real Fashion-MNIST.
FASHION_MNIST_SAMPLE = Source(
    name="fashion-mnist-sample",
    dirname="fashion-mnist-sample",
    files=_idx_files(
        "3c3bbe418aee6959d774aecd67b45cd6b981630e41d77d38c537b8fb4b375e5b",
        "3cec5867d99b5e7cdb4f7d395c357e44bad8d333f7915e408c2ee4c1bd9004cf",
        "bed7aac5a11fe167793a0e1bd370b9dd97ec9882db0b667a0216e7321b252a21",
        "71d3c2c23c025790a875428189d34027f76a5498d95dc0439841b5cbf3bb51c0",
    ),
    hint="reinstall mtlab: the sample ships inside the package (src/mtlab/embedded/fashion-mnist-sample/)",
    datasets=("fashion-mnist-sample", "multi-fashion-sample", "multi-fashion-mnist-sample"),
    embedded=True,
)

# Written by scripts/make_embedded_sample.py: 500 training and 200 test images per digit of the real MNIST.
MNIST_SAMPLE = Source(
    name="mnist-sample",
    dirname="mnist-sample",
    files=_idx_files(
        "291661882f80bfc1e8fc3c7ea17a7ed78362748efbfa17feda6a4618fa3c6f3a",
        "1531493183c30b840499aae3621a48abf90a239236dbfe6c2e0e7e5b4847c49a",
        "f56aa79475dd4a391c9f4367f0f10b1187e2dfe89561a280fd69f7f672f88560",
        "1e4fc73ef1dc50e315fd1026ae810c5a44e95261edee750cac85f14e6bfa79aa",
    ),
    hint="reinstall mtlab: the sample ships inside the package (src/mtlab/embedded/mnist-sample/)",
    datasets=("mnist-sample", "multi-mnist-sample", "multi-fashion-mnist-sample"),
    embedded=True,
)

CIFAR100 = Source(
    name="cifar100",
    dirname="cifar-100-python",
    files=(
        RawFile("train", "16019d7e3df5f24257cddd939b257f8d", "md5"),
        RawFile("test", "f0ef6b0ae62326f3e7ffdfab6717acfc", "md5"),
        RawFile("meta", "7973b15100ade9c7d40fb424638fde48", "md5"),
    ),
    archive=Archive(
        filename="cifar-100-python.tar.gz",
        urls=("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
        md5="eb9058c3a382ffc7106e4002c42a8d85",
    ),
    hint=(
        "get it with `mtlab data fetch cifar100`, or download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz "
        "(161 MiB) and unpack it under $MTLAB_DATA (`tar xzf cifar-100-python.tar.gz -C $MTLAB_DATA`)"
    ),
    datasets=("cifar100",),
)

# Looked up at call time (``SOURCES[name]``), so a test can swap in a synthetic entry with ``monkeypatch.setitem``.
SOURCES: dict[str, Source] = {
    s.name: s for s in (MNIST, FASHION_MNIST, FASHION_MNIST_SAMPLE, MNIST_SAMPLE, CIFAR100)
}
