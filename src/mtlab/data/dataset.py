"""Whole datasets held as tensors: one images tensor and one label tensor per task, per split."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mtlab.data.tasks import Task


@dataclass
class Split:
    """One split, whole: ``images`` (N, C, H, W) - uint8 pixels 0-255, or float32 in [0, 1] - and
    ``labels[task]`` (N,) int64 class indices for every task of the dataset."""

    images: Tensor
    labels: dict[str, Tensor]

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        for task, y in self.labels.items():
            if y.shape != (n,):
                raise ValueError(f"labels[{task!r}] has shape {tuple(y.shape)}, expected ({n},)")

    def __len__(self) -> int:
        return self.images.shape[0]

    def select(self, index: Tensor) -> Split:
        """The examples at ``index`` (a 1-D long tensor), in that order."""
        return Split(self.images[index], {t: y[index] for t, y in self.labels.items()})

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), {t: y.to(device) for t, y in self.labels.items()})


@dataclass
class Dataset:
    """A dataset as loaded from its files: the official train and test splits, and its tasks in order.

    ``origin`` says where the files were found (a directory, or ``embedded``), for run records and ``mtlab data``.
    """

    name: str
    tasks: dict[str, Task]
    train: Split
    test: Split
    origin: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one example."""
        c, h, w = self.train.images.shape[1:]
        return (int(c), int(h), int(w))
