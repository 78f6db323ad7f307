"""The ``arrays`` dataset: your own data as NumPy arrays in one ``.npz`` file.

```yaml
data:
  dataset: arrays
  path: data/faces.npz        # relative to the config file, or absolute
  tasks:                      # name -> {type, classes?, loss?}, in order
    identity: {type: multiclass, classes: [ann, bob, eve]}
    age: {type: regression, loss: huber}
```

The file holds ``x_train`` and ``x_test`` - images (N, C, H, W) of any numeric dtype (uint8 is kept as pixels 0-255,
anything else becomes float32) or features (N, D), float32 - and per task ``y_train_<task>`` and ``y_test_<task>``.
``x_val`` with ``y_val_<task>`` for every task give a validation split (used instead of carving ``val_fraction`` out
of train). Arrays the tasks do not name are ignored (``np.savez`` several label sets, train on some of them).

Targets, per task type (a missing label: ``-1`` in an integer array, ``NaN`` in a float one):

* ``multiclass`` (N,) class indices - integers, or integral floats with NaN for missing; ``classes`` names them
  (default: ``0`` .. the largest index over all splits), an index outside them is an error;
* ``binary`` (N,) 0/1 (bool, integer or float; NaN missing); ``classes`` may name [negative, positive];
* ``multilabel`` (N, L) 0/1; ``classes`` may name the L labels (default ``0`` .. ``L-1``);
* ``regression`` (N,) for one output or (N, O); ``classes`` may name the outputs (default: the task's name for
  (N,), ``0`` .. ``O-1`` for (N, O)); NaN is missing, an infinite value is an error;
* a plug-in's task type: read as its ``target_format()`` says (``classes`` as class indices like ``multiclass``,
  ``two_values`` like ``binary``, ``zero_one`` like ``multilabel``, ``numbers`` like ``regression``; by default
  class indices for an integer ``target_dtype``, else numbers).

Inputs must be finite (NaN in an input is an error). Every problem is one :class:`~mtlab.errors.DataError` line naming
the file and the array (and, for two arrays that disagree, both).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor

from mtlab.config.base import DataBase, register_dataset
from mtlab.data.table import TaskSpecBase, as_targets, check_task_names, default_loss
from mtlab.errors import DataError
from mtlab.tasks import TASK_TYPES, Task

if TYPE_CHECKING:
    from mtlab.data.dataset import Dataset


class ArrayTask(TaskSpecBase):
    """One task of an ``arrays`` dataset: its type; ``classes`` names its values (the classes of a multiclass task,
    [negative, positive] of a binary one, the labels of a multilabel one, the outputs of a regression one)."""


@register_dataset
class ArraysData(DataBase):
    """Your own data as NumPy arrays in one ``.npz`` file (see :mod:`mtlab.data.arrays`)."""

    dataset: Literal["arrays"]
    path: Path = Field(description="The .npz file (np.savez); relative to the config file.")
    tasks: dict[str, ArrayTask] = Field(description="Task name -> {type, classes?, loss?}; arrays y_<split>_<task>.")

    @field_validator("tasks")
    @classmethod
    def _task_names(cls, tasks: dict[str, ArrayTask]) -> dict[str, ArrayTask]:
        return check_task_names(tasks)

    @classmethod
    def example(cls, name: str, workdir: Path) -> dict[str, Any]:
        """The embedded Fashion-MNIST sample written out as a user's files (:mod:`mtlab.data.example_files`)."""
        from mtlab.data.example_files import write_examples

        write_examples(workdir, train=120, test=40, val=40)
        return {
            "dataset": name,
            "path": str(workdir / "fashion.npz"),
            "tasks": {
                "item": {"type": "multiclass"},
                "footwear": {"type": "binary"},
                "ink": {"type": "regression"},
                "look": {"type": "multilabel", "classes": ["wide", "tall", "dark"]},
            },
        }

    def task_types(self) -> dict[str, str]:
        return {name: spec.type for name, spec in self.tasks.items()}

    def resolve_paths(self, base: Path) -> None:
        if not self.path.is_absolute():
            self.path = Path(base) / self.path

    def load(self, seed: int) -> Dataset:
        return load_arrays(self)


class Archive:
    """The arrays of an ``.npz`` file, read on demand, with errors that name the file and the array."""

    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            what = "is a directory, not an .npz file" if path.is_dir() else "not found"
            raise DataError(f"{path}: arrays file {what} (data.path; a relative path is relative to the config file)")
        try:
            loaded = np.load(path, allow_pickle=False)
        except Exception as e:  # not a zip / npy, truncated, unreadable
            detail = " ".join(str(e).split()) or type(e).__name__
            raise DataError(f"{path}: cannot read as .npz ({detail}); write it with numpy.savez") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: holds a single array, not named arrays; write x_train, ... with numpy.savez")
        with loaded:
            self.keys = sorted(loaded.files)
            self._arrays: dict[str, np.ndarray] = {}
            for key in self.keys:
                try:
                    self._arrays[key] = loaded[key]
                except Exception as e:
                    detail = " ".join(str(e).split()) or type(e).__name__
                    raise DataError(f"{path}: array {key!r} cannot be read ({detail})") from None

    def __contains__(self, key: str) -> bool:
        return key in self._arrays

    def get(self, key: str, why: str) -> np.ndarray:
        if key not in self._arrays:
            raise DataError(f"{self.path}: no array {key!r} ({why}); the file holds {self.keys}")
        array = self._arrays[key]
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise self.error(key, f"has dtype {array.dtype}; it must hold numbers")
        return array

    def error(self, key: str, message: str) -> DataError:
        return DataError(f"{self.path}: array {key!r} {message}")


def _inputs(archive: Archive, key: str, array: np.ndarray) -> Tensor:
    if array.ndim not in (2, 4):
        raise archive.error(key, f"has shape {array.shape}; inputs are images (N, C, H, W) or features (N, D)")
    if array.ndim == 4 and array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    values = array.astype(np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(values), -1).any(1))[0])
        kind = "NaN" if np.isnan(values[i]).any() else "an infinite value"
        raise archive.error(key, f"holds {kind} in example {i}; inputs cannot be missing or infinite")
    return torch.from_numpy(values)


def _class_indices(archive: Archive, key: str, array: np.ndarray) -> np.ndarray:
    """(N,) int64 class indices, -1 where missing (NaN in a float array)."""
    if array.ndim != 1:
        raise archive.error(key, f"has shape {array.shape}; class indices are one per example (N,)")
    if np.issubdtype(array.dtype, np.floating):
        present = ~np.isnan(array)
        filled = np.nan_to_num(array, nan=0.0, posinf=0.5, neginf=0.5)  # an infinity counts as a fraction: bad
        bad = present & (filled != np.round(filled))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise archive.error(
                key, f"holds {array[i]!r} at example {i}; class indices are whole numbers (NaN missing)"
            )
        out = np.where(present, filled, -1).astype(np.int64)
    else:
        out = array.astype(np.int64)
    if (out < -1).any():
        i = int(np.flatnonzero(out < -1)[0])
        raise archive.error(key, f"holds class index {out[i]} at example {i}; indices are 0, 1, ... (-1 missing)")
    return out


def _floats(archive: Archive, key: str, array: np.ndarray, ndims: tuple[int, ...], shape_text: str) -> np.ndarray:
    if array.ndim not in ndims:
        raise archive.error(key, f"has shape {array.shape}; the task's targets are {shape_text}")
    values = array.astype(np.float32)
    if np.isinf(values).any():
        i = int(np.flatnonzero(np.isinf(values).reshape(len(values), -1).any(1))[0])
        raise archive.error(key, f"holds an infinite value at example {i}; targets are finite (NaN = missing)")
    return values


# Target format (TaskType.target_format) -> the array ranks it takes and how they are described.
_FLOAT_SHAPES = {
    "two_values": ((1,), "(N,) 0/1 values"),
    "zero_one": ((2,), "(N, L) 0/1 values, one column per label"),
    "numbers": ((1, 2), "(N,) for one output or (N, O)"),
}


def load_arrays(options: ArraysData) -> Dataset:
    from mtlab.data.dataset import Dataset, Split

    archive = Archive(options.path)
    path = options.path
    splits = ["train", "test"]
    if "x_val" in archive:
        splits.insert(1, "val")
    else:
        stray = [f"y_val_{t}" for t in options.tasks if f"y_val_{t}" in archive]
        if stray:
            raise archive.error(stray[0], "is a validation target, but the file has no 'x_val' inputs")

    inputs: dict[str, Tensor] = {}
    for split in splits:
        key = f"x_{split}"
        inputs[split] = _inputs(archive, key, archive.get(key, f"the {split} inputs"))
        if len(inputs[split]) == 0:
            remedy = "give examples or leave x_val out" if split == "val" else f"the run needs a {split} split"
            raise archive.error(key, f"has no examples; {remedy}")
        first = inputs["train"]
        if split != "train" and inputs[split].shape[1:] != first.shape[1:]:
            raise DataError(
                f"{path}: array {key!r} has examples of shape {tuple(inputs[split].shape[1:])} but 'x_train' "
                f"has {tuple(first.shape[1:])}"
            )

    tasks: dict[str, Task] = {}
    targets: dict[str, dict[str, Tensor]] = {split: {} for split in splits}
    for name, spec in options.tasks.items():
        raw: dict[str, np.ndarray] = {}
        for split in splits:
            key = f"y_{split}_{name}"
            array = archive.get(key, f"the {split} targets of task {name!r} (data.tasks.{name})")
            if len(array) != len(inputs[split]):
                raise DataError(
                    f"{path}: arrays 'x_{split}' and {key!r} differ in length ({len(inputs[split])} and {len(array)})"
                )
            raw[split] = array
        task, values = _task(archive, name, spec, raw)
        for split in splits:
            key = f"y_{split}_{name}"
            y = as_targets(torch.from_numpy(values[split]), task.task_type)
            problem = task.task_type.check_targets(task, y)
            if problem is not None:
                raise archive.error(key, f"({spec.type} task {name!r}, data.tasks.{name}) {problem}")
            targets[split][name] = y
        if not task.task_type.labelled(targets["train"][name]).any():
            raise archive.error(f"y_train_{name}", f"has no label for task {name!r}: every entry is missing")
        tasks[name] = task

    made = {split: Split(inputs[split], targets[split]) for split in splits}
    return Dataset(
        name=options.dataset,
        tasks=tasks,
        train=made["train"],
        test=made["test"],
        origin=str(path),
        val=made.get("val"),
    )


def _task(
    archive: Archive, name: str, spec: ArrayTask, raw: dict[str, np.ndarray]
) -> tuple[Task, dict[str, np.ndarray]]:
    """The task (with its value names) and its targets per split, as NumPy arrays in the type's kind."""
    classes_key = f"data.tasks.{name}.classes"
    form = TASK_TYPES.get(spec.type).target_format()
    if form == "classes":
        values = {split: _class_indices(archive, f"y_{split}_{name}", a) for split, a in raw.items()}
        if spec.classes is not None:
            names = tuple(spec.classes)
            for split, y in values.items():
                if (y >= len(names)).any():
                    i = int(np.flatnonzero(y >= len(names))[0])
                    raise archive.error(
                        f"y_{split}_{name}",
                        f"holds class index {y[i]} at example {i}, but {classes_key} declares {len(names)} classes "
                        f"(indices 0-{len(names) - 1})",
                    )
        else:
            largest = max((int(y.max()) for y in values.values() if y.size), default=-1)
            names = tuple(str(i) for i in range(largest + 1))
    else:
        ndims, shape_text = _FLOAT_SHAPES[form]
        values = {split: _floats(archive, f"y_{split}_{name}", a, ndims, shape_text) for split, a in raw.items()}
        widths = {split: (y.shape[1] if y.ndim == 2 else None) for split, y in values.items()}
        if len(set(widths.values())) > 1:
            (a, wa), (b, wb) = (
                next(iter(widths.items())),
                next((s, w) for s, w in widths.items() if w != widths["train"]),
            )
            raise DataError(
                f"{archive.path}: arrays 'y_{a}_{name}' and 'y_{b}_{name}' differ in shape per example "
                f"({'(N,)' if wa is None else f'(N, {wa})'} and {'(N,)' if wb is None else f'(N, {wb})'})"
            )
        width = widths["train"]
        if form == "two_values":
            default: tuple[str, ...] = ("0", "1")
        elif width is None:
            default = (name,)
        else:
            default = tuple(str(i) for i in range(width))
        names = tuple(spec.classes) if spec.classes is not None else default
        if len(names) != len(default):
            what = {"two_values": "values [negative, positive]"}.get(form, "outputs" if width is None else "columns")
            raise DataError(
                f"{archive.path}: {classes_key} names {len(names)} values, but task {name!r} has {len(default)} "
                f"{what} (array 'y_train_{name}' of shape {raw['train'].shape})"
            )
    return Task(name=name, class_names=names, type=spec.type, loss=spec.loss or default_loss(spec.type)), values
