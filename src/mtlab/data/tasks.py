"""The tasks each dataset offers, known before any file is read (so configs can be checked up front)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Fashion-MNIST item classes grouped as in the original fashion-mtl study: shoes {sandal, sneaker, ankle boot},
# gendered {dress, shirt, bag}, unisex {t-shirt, trouser, pullover, coat}.
DEFAULT_FASHION_GROUPS: dict[str, tuple[int, ...]] = {
    "shoes": (5, 7, 9),
    "gendered": (3, 6, 8),
    "unisex": (0, 1, 2, 4),
}

# The multi-* composites (:mod:`mtlab.data.overlay`): dataset -> the sources of its (top-left, bottom-right) images.
# The ``-sample`` variants use the samples embedded in the package; ``mnist-sample`` is the embedded MNIST sample,
# and without it the variants that need it say so when loaded.
OVERLAYS: dict[str, tuple[str, str]] = {
    "multi-mnist": ("mnist", "mnist"),
    "multi-fashion": ("fashion-mnist", "fashion-mnist"),
    "multi-fashion-mnist": ("fashion-mnist", "mnist"),
    "multi-mnist-sample": ("mnist-sample", "mnist-sample"),
    "multi-fashion-sample": ("fashion-mnist-sample", "fashion-mnist-sample"),
    "multi-fashion-mnist-sample": ("fashion-mnist-sample", "mnist-sample"),
}

_TASKS: dict[str, list[str]] = {
    "mnist": ["digit"],
    "mnist-sample": ["digit"],
    "fashion-mnist": ["item", "group"],
    "fashion-mnist-sample": ["item", "group"],
    "cifar100": ["fine", "coarse"],
    "mnist-pairs": ["leq", "digit_a", "digit_b"],
    **{name: ["left", "right"] for name in OVERLAYS},
}


@dataclass(frozen=True)
class Task:
    """A classification task: its name, and one display name per class (``num_classes = len(class_names)``)."""

    name: str
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def dataset_task_names(data: Any) -> list[str]:
    """Task names of the dataset a data config names (``data.dataset``), in the dataset's order."""
    return list(_TASKS[data.dataset])
