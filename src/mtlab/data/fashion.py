"""``fashion-mnist`` and ``fashion-mnist-sample``: Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017), 28 x 28 grey
images of 10 clothing items; tasks ``item`` (10 classes) and ``group`` (the index of the group holding the item, in
the order of ``groups``: by default shoes / gendered / unisex, the grouping of the original fashion-mtl study).

Files: the four IDX files of the official release (:mod:`mtlab.data.mnist` reads them), also found where Debian's
``dataset-fashion-mnist`` package puts them. ``fashion-mnist-sample`` is a small real sample embedded in the package
(300 training and 100 test images per class; no download).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, field_validator

from mtlab.config.base import DataBase, register_dataset
from mtlab.data.mnist import SIZE, find, idx_dataset, source
from mtlab.data.sources import IDX_GZ_LIST, Source, idx_files, register_source

if TYPE_CHECKING:
    from mtlab.data.dataset import Dataset
    from mtlab.data.resolve import Found

# Xiao, Rasul & Vollgraf (2017), Table 1.
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

# Fashion-MNIST item classes grouped as in the original fashion-mtl study: shoes {sandal, sneaker, ankle boot},
# gendered {dress, shirt, bag}, unisex {t-shirt, trouser, pullover, coat}.
DEFAULT_FASHION_GROUPS: dict[str, tuple[int, ...]] = {
    "shoes": (5, 7, 9),
    "gendered": (3, 6, 8),
    "unisex": (0, 1, 2, 4),
}

FASHION_MNIST = register_source(
    Source(
        name="fashion-mnist",
        dirname="fashion-mnist",
        files=idx_files(
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        hint=(
            "get them with `mtlab data fetch fashion-mnist`, or `apt-get install dataset-fashion-mnist` (Debian), "
            f"or download {IDX_GZ_LIST} from http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
            "into a folder fashion-mnist/ under $MTLAB_DATA"
        ),
    )
)

# Written by scripts/make_embedded_sample.py: 300 training and 100 test images per class of the real Fashion-MNIST.
FASHION_MNIST_SAMPLE = register_source(
    Source(
        name="fashion-mnist-sample",
        dirname="fashion-mnist-sample",
        files=idx_files(
            "3c3bbe418aee6959d774aecd67b45cd6b981630e41d77d38c537b8fb4b375e5b",
            "3cec5867d99b5e7cdb4f7d395c357e44bad8d333f7915e408c2ee4c1bd9004cf",
            "bed7aac5a11fe167793a0e1bd370b9dd97ec9882db0b667a0216e7321b252a21",
            "71d3c2c23c025790a875428189d34027f76a5498d95dc0439841b5cbf3bb51c0",
        ),
        hint="reinstall mtlab: the sample ships inside the package (src/mtlab/embedded/fashion-mnist-sample/)",
        embedded=True,
    )
)


@register_dataset
class FashionData(DataBase):
    """Fashion-MNIST (Xiao et al., 2017): tasks ``item`` (10 classes) and ``group`` (one class per group).

    ``fashion-mnist-sample`` is the small real sample embedded in the package (no download needed).
    """

    dataset: Literal["fashion-mnist", "fashion-mnist-sample"]
    offered_tasks: ClassVar[tuple[str, ...]] = ("item", "group")
    groups: dict[str, list[int]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_FASHION_GROUPS.items()},
        description="Group name -> item classes; every item 0-9 in exactly one group.",
    )

    @field_validator("groups")
    @classmethod
    def _groups_partition_items(cls, groups: dict[str, list[int]]) -> dict[str, list[int]]:
        items = sorted(i for members in groups.values() for i in members)
        if items != list(range(10)):
            raise ValueError(f"groups must place every item class 0-9 in exactly one group, got {items}")
        if len(groups) < 2:
            raise ValueError("groups needs at least two groups")
        return groups

    def input_shape(self) -> tuple[int, ...]:
        return (1, *SIZE)

    def sources(self) -> tuple[Source, ...]:
        return (source(self.dataset),)

    def load(self, seed: int) -> Dataset:
        return fashion_dataset(self.dataset, find(self.dataset, self.data_dir, self.download), self.groups)


def fashion_dataset(name: str, found: Found, groups: dict[str, list[int]]) -> Dataset:
    """Fashion-MNIST with tasks ``item`` and ``group``: the index (in config order) of the group holding the item."""
    import numpy as np
    import torch

    from mtlab.data.dataset import Dataset, Split
    from mtlab.tasks import Task

    items = idx_dataset(name, found, Task("item", FASHION_CLASSES))
    group_of_item = np.empty(10, dtype=np.int64)  # (10,): item class -> group index
    for index, members in enumerate(groups.values()):
        group_of_item[members] = index
    lookup = torch.from_numpy(group_of_item)
    tasks = {**items.tasks, "group": Task("group", tuple(groups))}
    train, test = (Split(s.images, {**s.labels, "group": lookup[s.labels["item"]]}) for s in (items.train, items.test))
    return Dataset(name, tasks, train, test, items.origin)
