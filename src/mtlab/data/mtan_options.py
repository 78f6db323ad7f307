"""The options and the loading that the datasets in the MTAN layout (:mod:`mtlab.data.mtan_layout`) share; each
dataset (:mod:`mtlab.data.nyuv2`, :mod:`mtlab.data.cityscapes`) says what differs: its place, size, published
counts, tasks and class names. Kept apart from the layout reader so that checking a config imports no torch."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from mtlab.config.base import DataBase
from mtlab.data.placed import HandPlaced, find


class MtanData(DataBase):
    """A dataset of MTAN-layout arrays; a subclass sets the class attributes and :meth:`folders`."""

    check_counts: bool = Field(
        True, description="Require the published numbers of training and test images (false: load whatever is there)."
    )

    place: ClassVar[HandPlaced]
    size: ClassVar[tuple[int, int]]
    """(H, W) of every array."""
    counts: ClassVar[dict[str, int]]
    """Published images per folder: ``train`` and ``val`` (mtlab's test split)."""
    tasks: ClassVar[dict[str, tuple[str, str]]]
    """Task name -> (task type, kind of array: ``label``, ``depth`` or ``normal``)."""

    def folders(self) -> dict[str, str]:
        """Kind of array -> its folder (``image`` included)."""
        raise NotImplementedError

    def class_names(self) -> dict[str, tuple[str, ...]]:
        """Task name -> the names of its classes or outputs."""
        raise NotImplementedError

    def task_types(self) -> dict[str, str]:
        return {name: kind for name, (kind, _) in self.tasks.items()}

    def load(self, seed: int):
        from mtlab.data.dataset import Dataset
        from mtlab.data.mtan_layout import load_split_targets
        from mtlab.tasks import Task

        root = find(self.place, self.data_dir)
        folders, names = self.folders(), self.class_names()
        tasks = {name: Task(name, names[name], kind) for name, (kind, _) in self.tasks.items()}
        wanted = {name: (tasks[name], array, folders[array]) for name, (_, array) in self.tasks.items()}
        remedy = f"to get intact files, {self.place.obtain}"
        splits = [
            load_split_targets(
                root, split, wanted, self.size, self.counts[split] if self.check_counts else None, remedy
            )
            for split in ("train", "val")
        ]
        return Dataset(self.dataset, tasks, splits[0], splits[1], str(root))
