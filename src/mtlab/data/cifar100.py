"""``cifar100``: CIFAR-100 (Krizhevsky, 2009), 32 x 32 colour images; tasks ``fine`` (100 classes) and ``coarse`` (the
20 superclasses).

Files: the python version's ``train``, ``test`` and ``meta`` pickles (:mod:`mtlab.data.cifar` reads them safely),
checked by their md5, from the official tarball (downloaded and unpacked by ``mtlab data fetch cifar100``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from mtlab.config.base import DataBase, register_dataset
from mtlab.data.mnist import cached, find, source
from mtlab.data.sources import Archive, RawFile, Source, register_source

if TYPE_CHECKING:
    from mtlab.data.dataset import Dataset

CIFAR100 = register_source(
    Source(
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
            "get it with `mtlab data fetch cifar100`, or download "
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (161 MiB) and unpack it under $MTLAB_DATA "
            "(`tar xzf cifar-100-python.tar.gz -C $MTLAB_DATA`)"
        ),
    )
)


@register_dataset
class Cifar100Data(DataBase):
    """CIFAR-100 (Krizhevsky, 2009): 32x32 colour images, tasks ``fine`` (100) and ``coarse`` (20)."""

    dataset: Literal["cifar100"]
    offered_tasks: ClassVar[tuple[str, ...]] = ("fine", "coarse")

    def input_shape(self) -> tuple[int, ...]:
        return (3, 32, 32)

    def sources(self) -> tuple[Source, ...]:
        return (source("cifar100"),)

    def load(self, seed: int) -> Dataset:
        import torch

        from mtlab.data import cifar
        from mtlab.data.dataset import Dataset, Split
        from mtlab.tasks import Task

        found = find("cifar100", self.data_dir, self.download)
        remedy = found.source.remedy
        fine_names, coarse_names = cifar.load_meta(found.path("meta"), remedy=remedy)
        tasks = {"fine": Task("fine", fine_names), "coarse": Task("coarse", coarse_names)}
        splits = []
        for name in ("train", "test"):
            batch = cached(cifar.load_batch, found.path(name), remedy)
            labels = {"fine": torch.from_numpy(batch.fine), "coarse": torch.from_numpy(batch.coarse)}
            splits.append(Split(torch.from_numpy(batch.images), labels))
        return Dataset("cifar100", tasks, splits[0], splits[1], str(found.place.directory))
