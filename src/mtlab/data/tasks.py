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

_TASKS: dict[str, list[str]] = {
    "mnist": ["digit"],
    "mnist-sample": ["digit"],
    "fashion-mnist": ["item", "group"],
    "fashion-mnist-sample": ["item", "group"],
    "cifar100": ["fine", "coarse"],
    "mnist-pairs": ["leq", "digit_a", "digit_b"],
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
