"""Every dataset mtlab can load, by name: one registered builder each, one factory for all.

A builder takes the data config (``MnistData``, ``FashionData``, ... from :mod:`mtlab.config.schema`) and the run's
seed, finds and verifies the raw files (:mod:`mtlab.data.resolve`), parses them and returns a whole
:class:`~mtlab.data.dataset.Dataset` - the official train and test splits as tensors, one label tensor per task.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mtlab.data import cifar
from mtlab.data.dataset import Dataset, Split
from mtlab.data.idx import read_idx
from mtlab.data.overlay import Side, overlay_dataset
from mtlab.data.pairs import DIGITS, make_pairs
from mtlab.data.resolve import Found, resolve
from mtlab.data.sources import SOURCES
from mtlab.data.tasks import OVERLAYS, Task
from mtlab.errors import ConfigError, DataError

if TYPE_CHECKING:  # the config layer imports mtlab.data.tasks; a runtime import here would be circular
    from mtlab.config.schema import Cifar100Data, FashionData, MnistData, MnistPairsData, MultiData

Builder = Callable[[Any, int], Dataset]
_BUILDERS: dict[str, Builder] = {}

# Xiao, Rasul & Vollgraf (2017), Table 1.
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make ``builder(config, seed) -> Dataset`` the loader of dataset ``name``."""

    def add(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return add


def registered_datasets() -> list[str]:
    """The names ``load_dataset`` accepts: mtlab's built-in builders, then every dataset plug-in whose options load
    themselves (``table``, ``arrays``, outside packages' entry points)."""
    from mtlab.config.base import DATASETS

    return list(dict.fromkeys([*_BUILDERS, *DATASETS.names()]))


def load_dataset(config: Any, seed: int = 0) -> Dataset:
    """Load the dataset ``config.dataset`` names, as the data config says (``data_dir``, ``download``, ...).

    ``seed`` matters only for datasets drawn at random from their files (``mnist-pairs``). Raises
    :class:`DataError` when the files are missing or damaged.
    """
    builder = _BUILDERS.get(config.dataset)
    if builder is not None:
        return builder(config, seed)
    if config.dataset in registered_datasets():
        return config.load(seed)  # a plug-in's options load their own dataset
    raise ConfigError(f"data.dataset: unknown dataset {config.dataset!r}; known: {registered_datasets()}")


def _find(source_name: str, config: Any) -> Found:
    return resolve(SOURCES[source_name], config.data_dir, download=config.download)


def _cached(parse: Callable[..., Any], path: Path, remedy: str) -> Any:
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


def _idx_split(found: Found, prefix: str, task: str) -> Split:
    """The ``prefix`` (``train`` / ``t10k``) split of an IDX source: images (N, 1, 28, 28) uint8, labels (N,)."""
    remedy = found.source.remedy
    images_path = found.path(f"{prefix}-images-idx3-ubyte")
    labels_path = found.path(f"{prefix}-labels-idx1-ubyte")
    images, labels = _cached(read_idx, images_path, remedy), _cached(read_idx, labels_path, remedy)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{images_path} or {labels_path} holds the wrong kind of IDX data; {remedy}")
    if len(images) != len(labels) or (len(labels) and labels.max() > 9):
        raise DataError(f"{labels_path} does not hold one label 0-9 per image of {images_path}; {remedy}")
    return Split(torch.from_numpy(images).unsqueeze(1), {task: torch.from_numpy(labels).long()})


def _idx_dataset(name: str, found: Found, task: Task, origin: str) -> Dataset:
    train = _idx_split(found, "train", task.name)
    test = _idx_split(found, "t10k", task.name)
    return Dataset(name, {task.name: task}, train, test, origin)


@register("mnist")
def _mnist(config: MnistData | MnistPairsData, seed: int) -> Dataset:
    found = _find("mnist", config)
    return _idx_dataset("mnist", found, Task("digit", DIGITS), str(found.place.directory))


@register("mnist-sample")
def _mnist_sample(config: MnistData | MnistPairsData, seed: int) -> Dataset:
    found = resolve(SOURCES["mnist-sample"], download=False)
    return _idx_dataset("mnist-sample", found, Task("digit", DIGITS), "embedded")


@register("mnist-pairs")
def _mnist_pairs(config: MnistPairsData, seed: int) -> Dataset:
    digits = _mnist_sample if config.digits == "mnist-sample" else _mnist
    return make_pairs(digits(config, seed), config.pairs, seed, config.pixel_scale)


def _fashion_dataset(name: str, found: Found, origin: str, groups: dict[str, list[int]]) -> Dataset:
    """Fashion-MNIST with tasks ``item`` and ``group``: the index (in config order) of the group holding the item."""
    items = _idx_dataset(name, found, Task("item", FASHION_CLASSES), origin)
    group_of_item = np.empty(10, dtype=np.int64)  # (10,): item class -> group index
    for index, members in enumerate(groups.values()):
        group_of_item[members] = index
    lookup = torch.from_numpy(group_of_item)
    tasks = {**items.tasks, "group": Task("group", tuple(groups))}
    train, test = (Split(s.images, {**s.labels, "group": lookup[s.labels["item"]]}) for s in (items.train, items.test))
    return Dataset(name, tasks, train, test, origin)


@register("fashion-mnist")
def _fashion(config: FashionData, seed: int) -> Dataset:
    found = _find("fashion-mnist", config)
    return _fashion_dataset("fashion-mnist", found, str(found.place.directory), config.groups)


@register("fashion-mnist-sample")
def _fashion_sample(config: FashionData, seed: int) -> Dataset:
    found = resolve(SOURCES["fashion-mnist-sample"], download=False)
    return _fashion_dataset("fashion-mnist-sample", found, "embedded", config.groups)


@register("cifar100")
def _cifar100(config: Cifar100Data, seed: int) -> Dataset:
    found = _find("cifar100", config)
    remedy = found.source.remedy
    fine_names, coarse_names = cifar.load_meta(found.path("meta"), remedy=remedy)
    tasks = {"fine": Task("fine", fine_names), "coarse": Task("coarse", coarse_names)}
    splits = []
    for name in ("train", "test"):
        batch = _cached(cifar.load_batch, found.path(name), remedy)
        labels = {"fine": torch.from_numpy(batch.fine), "coarse": torch.from_numpy(batch.coarse)}
        splits.append(Split(torch.from_numpy(batch.images), labels))
    return Dataset("cifar100", tasks, splits[0], splits[1], str(found.place.directory))


# The class names of each source the multi-* composites are drawn from.
_SOURCE_CLASSES = {
    "mnist": DIGITS, "mnist-sample": DIGITS, "fashion-mnist": FASHION_CLASSES, "fashion-mnist-sample": FASHION_CLASSES,
}  # fmt: skip


def _overlay_side(dataset: str, source_name: str, config: MultiData) -> Side:
    """One side of a multi-* dataset: its verified files, identified for the cache by their content digests."""
    if source_name not in SOURCES:
        raise DataError(
            f"{dataset} is built from the embedded {source_name}, which this installation of mtlab does not ship; "
            "use the full-data variant (e.g. multi-mnist) or multi-fashion-sample"
        )
    found = _find(source_name, config)
    origin = "embedded" if found.source.embedded else str(found.place.directory)
    digests = tuple(raw.digest for raw in found.source.files)  # == the verified content of each file
    task = Task("class", _SOURCE_CLASSES[source_name])
    return Side(source_name, digests, task, origin, lambda prefix: _idx_split(found, prefix, task.name))


def _overlay_builder(name: str) -> Builder:
    def build(config: MultiData, seed: int) -> Dataset:
        left, right = (_overlay_side(name, source, config) for source in OVERLAYS[name])
        return overlay_dataset(name, left, right, config)

    return build


for _name in OVERLAYS:
    register(_name)(_overlay_builder(_name))
