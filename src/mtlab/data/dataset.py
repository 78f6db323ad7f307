"""Whole datasets held as tensors: one inputs tensor and one target tensor per task, per split."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from mtlab.tasks import Task


@dataclass
class Split:
    """One split, whole: the inputs ``images`` - (N, C, H, W) uint8 pixels 0-255 or float32, or (N, D) float32
    feature vectors - and ``labels[task]``, the targets of every task of the dataset in the shape and dtype its task
    type declares ((N,) int64 class indices for ``multiclass``; (N,) or (N, L) float32 otherwise), a missing label
    being -1 (integers) or NaN (floats). ``inputs`` and ``targets`` name the same tensors."""

    images: Tensor
    labels: dict[str, Tensor]

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        for task, y in self.labels.items():
            if y.shape[:1] != (n,):
                raise ValueError(f"labels[{task!r}] has shape {tuple(y.shape)}, expected ({n}, ...)")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def inputs(self) -> Tensor:
        return self.images

    @property
    def targets(self) -> dict[str, Tensor]:
        return self.labels

    def select(self, index: Tensor) -> Split:
        """The examples at ``index`` (a 1-D long tensor), in that order."""
        return Split(self.images[index], {t: y[index] for t, y in self.labels.items()})

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), {t: y.to(device) for t, y in self.labels.items()})


@dataclass
class Dataset:
    """A dataset as loaded from its files: the official train and test splits, and its tasks in order.

    ``origin`` says where the files were found (a directory, or ``embedded``), for run records and ``mtlab data``;
    ``val`` is a validation split the data itself gives (a table's ``split`` column), used instead of carving one.
    ``notes``: what the data decided that the config did not say.
    """

    name: str
    tasks: dict[str, Task]
    train: Split
    test: Split
    origin: str
    val: Split | None = None
    notes: list[str] = field(default_factory=list)
    """What the data decided that the config did not say (a task's classes, found in its column): for the train
    summary, the run record and the study report's header, so a typo in the data is seen."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example: (C, H, W) for images, (D,) for feature vectors."""
        return tuple(int(d) for d in self.train.images.shape[1:])
