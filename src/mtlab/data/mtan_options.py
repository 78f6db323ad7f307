"""The options and the loading that the datasets in the MTAN layout (:mod:`mtlab.data.mtan_layout`) share; each
dataset (:mod:`mtlab.data.nyuv2`, :mod:`mtlab.data.cityscapes`) says what differs: its place, size, published
counts, tasks and class names. Kept apart from the layout reader so that checking a config imports no torch.

A loaded dataset is remembered for the life of the process (:func:`mtlab.data.mtan_layout.cached_dataset`), so the
seeds of a stacked group and the runs of a study share one copy in memory instead of reading gigabytes each time."""

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

    def input_shape(self) -> tuple[int, ...]:
        return (3, *self.size)

    def load(self, seed: int):
        from mtlab.data.mtan_layout import cached_dataset, files_signature

        root = find(self.place, self.data_dir)
        folders = self.folders()
        signature = files_signature(root, folders.values())
        expected = tuple(self.counts.items()) if self.check_counts else None
        return cached_dataset(
            self.dataset,
            str(root),
            tuple(folders.items()),
            self.size,
            expected,
            self.task_spec(),
            signature,
            f"to get intact files, {self.place.obtain}",
        )

    def task_spec(self) -> tuple[tuple[str, str, str, tuple[str, ...]], ...]:
        """(task name, task type, kind of array, class names) per task: what the loaded dataset depends on."""
        names = self.class_names()
        return tuple((name, kind, array, names[name]) for name, (kind, array) in self.tasks.items())
