"""The ``table`` dataset: your own data as a CSV or Parquet file, one row per example.

```yaml
data:
  dataset: table
  path: faces/labels.csv         # relative to the config file, or absolute
  image_column: file             # image paths, relative to the table's directory (PNG / JPEG, grey or RGB)
  image_size: [64, 64]           # resize every image to [H, W] (needed only when the sizes differ)
  # feature_columns: [x1, x2]    # instead of images: numeric features, inputs (N, D) float32
  split_column: split            # train / val / test per row; without it test_fraction carves a seeded test split
  tasks:
    age: {type: regression, column: age}
    gender: {type: binary, column: gender}
    attributes: {type: multilabel, columns: [smiling, glasses, hat]}
    identity: {type: multiclass, column: person}
```

Cells. An empty cell is a missing label (``-1`` for a ``multiclass`` task, ``NaN`` for the float types); a missing
feature or image is an error. Rows are numbered from 1 in error messages (the header does not count).

* ``multiclass``: the classes are ``classes`` when declared (a value outside them is an error), else the sorted
  distinct values of the column over all splits (numerically when every value is a number);
* ``binary``: 0/1, true/false, or exactly two distinct values (sorted; the second is positive), or ``positive:``
  names the positive value (the column then holds it and at most one other value);
* ``multilabel``: ``columns`` of 0/1 (or true/false) cells, one label per column;
* ``regression``: numbers, one output per column (``column``: targets (N,); ``columns``: (N, O)); ``loss`` is
  ``mse`` (default), ``l1`` or ``huber``;
* a task type registered by a plug-in: read as its ``target_format()`` says - ``classes`` like ``multiclass``,
  ``two_values`` like ``binary``, ``zero_one`` like ``multilabel``, ``numbers`` like ``regression`` (by default:
  classes for an integer ``target_dtype``, else numbers); its ``losses`` are the ones ``loss`` may name; the type's
  own ``check_targets`` then has the last word.

Each rule above is the task type's answer (:class:`~mtlab.tasks.TaskType`: ``target_format``, ``one_column``,
``losses``, ``missing_label``), never a check of its name.

Splits. ``split_column`` assigns each row to ``train``, ``val`` (the validation split, used instead of carving
``val_fraction`` out of train) or ``test``. Without it, ``test_fraction`` of the rows, drawn with ``split_seed`` (the
same for every run seed), form the test split.

Images are decoded once with Pillow, in parallel threads: converted to ``L`` when every image is grey, else to
``RGB`` (C = 1 or 3), resized to ``image_size`` (bilinear, antialiased) when given, and stored as uint8
(N, C, H, W). The decoded images are cached on disk (:mod:`mtlab.data.derived`) under a key made of the SHA-256 of
every image file's content, ``image_size`` and :data:`IMAGE_FORMAT`: a second run reads the files only to hash them,
and a changed file gives a new key, never a stale image.

Everything is checked when the dataset is loaded, before any training, and every problem is one
:class:`~mtlab.errors.DataError` line naming the file, the column (and the config key that names it) and the row.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from mtlab.config.base import DataBase, Strict, at, register_dataset
from mtlab.errors import DataError, did_you_mean
from mtlab.tasks import TASK_TYPES, Task, TaskType

if TYPE_CHECKING:
    import pandas as pd

    from mtlab.config.schema import RunConfig
    from mtlab.data.dataset import Dataset, Split

IMAGE_FORMAT = 1
"""Version of the decoded-image layout in the cache key; bump when decoding changes meaning."""

SPLITS = ("train", "val", "test")
_TRAIN, _VAL, _TEST = 0, 1, 2


# --------------------------------------------------------------------------------------------------- task options


def text(value: Any) -> str:
    """A cell or option value as the text classes are named by: ``true``/``false`` for booleans, integral numbers
    without a fractional part (so CSV ``3`` and Parquet ``3.0`` are the same class), other values as written."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value).strip()


def check_task_names(tasks: dict[str, Any]) -> dict[str, Any]:
    """Task names are identifiers without dots (they appear in metric keys such as ``val.age.mae``)."""
    if not tasks:
        raise ValueError("needs at least one task")
    for name in tasks:
        if not name.isidentifier():
            raise ValueError(f"task name {name!r} must be an identifier (letters, digits, _; no dots or spaces)")
    return tasks


def check_type_name(name: str) -> str:
    known = TASK_TYPES.names()
    if name not in known:
        raise ValueError(f"unknown task type {name!r}; " + did_you_mean(name, known, otherwise=f"known: {known}"))
    return name


def default_loss(type_name: str) -> str:
    """The loss of a task of this type when its config names none: the type's first, else ``mse``."""
    return (TASK_TYPES.get(type_name).losses or ("mse",))[0]


class TaskSpecBase(Strict):
    """What a dataset task declares everywhere: its type, the names of its values, its regression loss."""

    type: str = Field(description="A registered task type: multiclass, binary, multilabel, regression, or a plug-in's.")
    classes: list[str] | None = Field(
        None, min_length=1, description="multiclass: the classes, in index order (a value outside them is an error)."
    )
    loss: str | None = Field(None, description="regression: mse (default), l1 or huber (the task type's losses).")

    @field_validator("type")
    @classmethod
    def _known_type(cls, name: str) -> str:
        return check_type_name(name)

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_text(cls, value: object) -> object:
        if isinstance(value, (list, tuple)):
            return [text(v) if v is not None else v for v in value]
        return value

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, classes: list[str] | None) -> list[str] | None:
        if classes is not None and len(set(classes)) != len(classes):
            raise ValueError(f"classes {classes} name a class twice")
        return classes

    @model_validator(mode="after")
    def _loss_fits_type(self) -> TaskSpecBase:
        losses = TASK_TYPES.get(self.type).losses
        if self.loss is not None and losses is not None:
            if losses and self.loss not in losses:
                raise ValueError(f"loss {self.loss!r} is not one of {list(losses)}")
            if not losses:
                choosing = " or ".join(name for name, kind in TASK_TYPES.items() if kind.losses)
                raise ValueError(f"loss applies to {choosing} tasks; a {self.type} task has its own loss")
        return self


class TableTask(TaskSpecBase):
    """One task of a ``table`` dataset: its type and the column(s) holding its labels."""

    column: str | None = Field(None, description="The column holding the labels.")
    columns: list[str] | None = Field(
        None, min_length=1, description="multilabel: one column per label; regression: one column per output."
    )
    positive: str | None = Field(None, description="binary: the value that is the positive class.")

    @field_validator("positive", mode="before")
    @classmethod
    def _positive_as_text(cls, value: object) -> object:
        return text(value) if value is not None else value

    @model_validator(mode="after")
    def _columns_fit_type(self) -> TableTask:
        if (self.column is None) == (self.columns is None):
            raise ValueError("give exactly one of column (one column) or columns (a list)")
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns {self.columns} name a column twice")
        kind = TASK_TYPES.get(self.type)
        if kind.one_column and self.columns is not None:
            raise ValueError(f"a {self.type} task reads one column; use column, not columns")
        if self.classes is not None and kind.target_format() != "classes":
            raise ValueError(f"classes apply to multiclass tasks, not {self.type}")
        if self.positive is not None and kind.target_format() != "two_values":
            raise ValueError(f"positive applies to binary tasks, not {self.type}")
        return self

    @property
    def source_columns(self) -> list[str]:
        return list(self.columns) if self.columns is not None else [self.column]  # type: ignore[list-item]


# ------------------------------------------------------------------------------------------------------ options


@register_dataset
class TableData(DataBase):
    """Your own data: a CSV or Parquet table, one row per example, with images (paths) or numeric features as
    inputs and any number of typed tasks (see :mod:`mtlab.data.table`)."""

    dataset: Literal["table"]
    path: Path = Field(
        description="The CSV (.csv, .tsv, .txt) or Parquet (.parquet, .pq) file; relative to the config.",
        examples=["labels.csv"],
    )
    image_column: str | None = Field(
        None, description="Column of image paths (PNG / JPEG), relative to the table's directory or absolute."
    )
    image_size: tuple[int, int] | None = Field(
        None, description="Resize every image to [H, W]; needed only when the images' sizes differ."
    )
    feature_columns: list[str] | None = Field(
        None, min_length=1, description="Instead of images: numeric feature columns, inputs (N, D) float32."
    )
    split_column: str | None = Field(None, description="Column of train / val / test per row.")
    test_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="Without split_column: fraction of the rows drawn as the test split."
    )
    split_seed: int = Field(
        0, ge=0, description="Seed of the test_fraction draw (the same test split for every run seed)."
    )
    tasks: dict[str, TableTask] = Field(
        description="Task name -> {type, column or columns, ...}, in order.",
        examples=[{"shape": {"type": "multiclass", "column": "shape"}}],
    )

    @field_validator("tasks")
    @classmethod
    def _task_names(cls, tasks: dict[str, TableTask]) -> dict[str, TableTask]:
        return check_task_names(tasks)

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, size: tuple[int, int] | None) -> tuple[int, int] | None:
        if size is not None and min(size) <= 0:
            raise ValueError(f"image_size {list(size)} must be two positive sizes [H, W]")
        return size

    @model_validator(mode="after")
    def _one_input(self) -> TableData:
        if (self.image_column is None) == (self.feature_columns is None):
            raise at("data", "give exactly one of image_column (images) or feature_columns (numeric features)")
        if self.image_size is not None and self.image_column is None:
            raise at("data.image_size", "resizes images; it needs image_column, not feature_columns")
        return self

    @classmethod
    def example(cls, name: str, workdir: Path) -> dict[str, Any]:
        """The embedded Fashion-MNIST sample written out as a user's files (:mod:`mtlab.data.example_files`)."""
        from mtlab.data.example_files import write_examples

        write_examples(workdir, train=120, test=40, val=40)
        return {
            "dataset": name,
            "path": str(workdir / "fashion-table" / "labels.csv"),
            "image_column": "file",
            "split_column": "split",
            "tasks": {
                "item": {"type": "multiclass", "column": "item"},
                "footwear": {"type": "binary", "column": "footwear", "positive": "yes"},
                "ink": {"type": "regression", "column": "ink"},
                "look": {"type": "multilabel", "columns": ["wide", "tall", "dark"]},
            },
        }

    def task_types(self) -> dict[str, str]:
        return {name: spec.type for name, spec in self.tasks.items()}

    def input_shape(self) -> tuple[int, ...] | None:
        # Features: (D,). Images: grey or colour is known only once they are read.
        return (len(self.feature_columns),) if self.feature_columns is not None else None

    def resolve_paths(self, base: Path) -> None:
        if not self.path.is_absolute():
            self.path = Path(base) / self.path

    def check_run(self, run: RunConfig) -> None:
        if self.feature_columns is not None and not run.model.dense_only():
            raise at(
                "data.feature_columns",
                "features are flat vectors (N, D); use mlp trunks, not convolutional ones, or give image_column",
            )

    def load(self, seed: int) -> Dataset:
        return load_table(self)


# ------------------------------------------------------------------------------------------------------- reading


def read_table(path: Path) -> pd.DataFrame:
    """The table at ``path``: a CSV read as text (an empty cell is NaN, nothing else is), or a Parquet file."""
    import pandas as pd

    if not path.is_file():
        what = "is a directory, not a table file" if path.is_dir() else "not found"
        raise DataError(f"{path}: table {what} (data.path; a relative path is relative to the config file)")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise DataError(
                    f"{path}: reading Parquet needs pyarrow; `pip install pyarrow` (or mtlab[parquet]) or give a CSV"
                ) from None
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                skipinitialspace=True,
                sep="\t" if suffix == ".tsv" else ",",
            )
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the table is empty (no header line)") from None
    except Exception as e:  # parser errors, bad encodings, Arrow errors, I/O errors: all one message
        detail = " ".join(str(e).split()) or type(e).__name__
        kind = "Parquet" if suffix in (".parquet", ".pq") else "CSV"
        raise DataError(f"{path}: cannot read the table as {kind} ({detail})") from None
    if len(frame) == 0:
        raise DataError(f"{path}: the table has a header but no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame.reset_index(drop=True)


class Table:
    """A loaded table and where it came from, for error messages that name the file, column and row."""

    def __init__(self, path: Path, frame: pd.DataFrame):
        self.path = path
        self.frame = frame

    def __len__(self) -> int:
        return len(self.frame)

    def error(self, column: str, key: str, message: str, row: int | None = None) -> DataError:
        where = f"column {column!r} ({key})" + (f", row {row + 1}" if row is not None else "")
        return DataError(f"{self.path}: {where}: {message}")

    def require(self, column: str, key: str) -> None:
        if column not in self.frame.columns:
            available = ", ".join(repr(c) for c in self.frame.columns)
            raise DataError(f"{self.path}: no column {column!r} ({key}); the table has columns {available}")

    def cells(self, column: str) -> list[Any]:
        """The column's cells, None where empty."""
        import pandas as pd

        return [None if _missing(v, pd) else v for v in self.frame[column].tolist()]

    def numbers(self, column: str, key: str, *, what: str) -> np.ndarray:
        """The column as float64, NaN where empty; a cell that is not a number is an error naming it."""
        out = np.full(len(self), np.nan)
        for i, v in enumerate(self.cells(column)):
            if v is None:
                continue
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                raise self.error(column, key, f"{text(v)!r} is not a number ({what})", i) from None
        return out


def _missing(value: Any, pd: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _sorted_values(values: set[str]) -> list[str]:
    """Numerically when every value is a number (so ``10`` follows ``9``), else as text."""
    try:
        return sorted(values, key=lambda v: (float(v), v))
    except ValueError:
        return sorted(values)


# -------------------------------------------------------------------------------------------------------- targets


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def class_targets(table: Table, column: str, key: str, classes: list[str] | None) -> tuple[Tensor, tuple[str, ...]]:
    """Class indices (N,) long, -1 where empty, and the class names."""
    cells = [None if v is None else text(v) for v in table.cells(column)]
    present = {v for v in cells if v is not None}
    if classes is None:
        names = _sorted_values(present)
    else:
        names = list(classes)
        declared = set(names)
        outside = [i for i, v in enumerate(cells) if v is not None and v not in declared]
        if outside:
            i = outside[0]
            raise table.error(
                column, key, f"value {cells[i]!r} is not one of the declared classes {names} (classes)", outside[0]
            )
    index = {name: k for k, name in enumerate(names)}
    y = torch.tensor([-1 if v is None else index[v] for v in cells], dtype=torch.long)
    return y, tuple(names)


_TRUE, _FALSE = {"true", "yes"}, {"false", "no"}


def binary_targets(table: Table, column: str, key: str, positive: str | None) -> tuple[Tensor, tuple[str, ...]]:
    """0/1 float32 (N,), NaN where empty, and (negative name, positive name)."""
    cells = [None if v is None else text(v) for v in table.cells(column)]
    present = {v for v in cells if v is not None}
    if positive is not None:
        others = _sorted_values(present - {positive})
        if positive not in present:
            raise table.error(column, key, f"the positive value {positive!r} (positive) never occurs in the column")
        if len(others) > 1:
            raise table.error(
                column, key, f"holds {len(present)} distinct values {_sorted_values(present)}; a binary task has two"
            )
        negative = others[0] if others else f"not {positive}"
        names, is_positive = (negative, positive), (lambda v: v == positive)
    elif present and all(_number(v) in (0.0, 1.0) for v in present):
        names, is_positive = ("0", "1"), (lambda v: _number(v) == 1.0)
    elif present and all(v.lower() in _TRUE | _FALSE for v in present):
        names, is_positive = ("false", "true"), (lambda v: v.lower() in _TRUE)
    elif len(present) == 2:
        negative, positive = _sorted_values(present)
        names, is_positive = (negative, positive), (lambda v: v == positive)
    elif len(present) > 2:
        shown = _sorted_values(present)
        listed = f"{shown[:6]}..." if len(shown) > 6 else str(shown)
        raise table.error(
            column, key, f"holds {len(present)} distinct values {listed}; a binary task has two (0/1, true/false)"
        )
    else:
        only = f"only the value {next(iter(present))!r}" if present else "no value"
        raise table.error(column, key, f"holds {only}; set positive: to name the positive value")
    y = torch.tensor([math.nan if v is None else float(is_positive(v)) for v in cells], dtype=torch.float32)
    return y, names


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def zero_one_column(table: Table, column: str, key: str) -> np.ndarray:
    """A multilabel column: 1/0 (or true/false), NaN where empty."""
    out = np.full(len(table), np.nan)
    for i, v in enumerate(table.cells(column)):
        if v is None:
            continue
        t = text(v)
        if _number(t) in (0.0, 1.0):
            out[i] = _number(t)
        elif t.lower() in _TRUE | _FALSE:
            out[i] = float(t.lower() in _TRUE)
        else:
            raise table.error(
                column, key, f"holds {t!r}; a multilabel column holds 0/1 (or true/false), or is empty", i
            )
    return out


def number_columns(table: Table, columns: list[str], key: str, *, what: str) -> np.ndarray:
    """(N, len(columns)) float64 of numeric cells, NaN where empty; infinite values are an error."""
    out = np.stack([table.numbers(c, key, what=what) for c in columns], axis=1)
    for j, column in enumerate(columns):
        bad = np.isinf(out[:, j])
        if bad.any():
            i = _first_bad(bad)
            raise table.error(column, key, f"holds the infinite value {table.cells(column)[i]!r} ({what})", i)
    return out


def as_targets(values: Tensor, kind: TaskType) -> Tensor:
    """``values`` as read (class indices with -1 missing, or floats with NaN missing) in the dtype of the task type
    ``kind``, each missing label stored as the type's marker."""
    absent = torch.isnan(values) if values.is_floating_point() else values < 0
    targets = torch.where(absent, torch.zeros_like(values), values).to(kind.target_dtype)
    return targets.masked_fill(absent, kind.missing_label)


def task_targets(table: Table, name: str, spec: TableTask) -> tuple[Task, Tensor]:
    """The task and its targets over every row, in the task type's dtype; checked by the type."""
    key = f"data.tasks.{name}.column" + ("s" if spec.columns is not None else "")
    columns = spec.source_columns
    loss = spec.loss or default_loss(spec.type)
    form = TASK_TYPES.get(spec.type).target_format()
    if form == "two_values":
        y, names = binary_targets(table, columns[0], key, spec.positive)
    elif form == "zero_one":
        y = torch.from_numpy(np.stack([zero_one_column(table, c, key) for c in columns], axis=1)).float()
        names = tuple(columns)
    elif form == "classes":
        y, names = class_targets(table, columns[0], key, spec.classes)
    else:  # numbers per column
        values = number_columns(table, columns, key, what=f"{spec.type} task {name!r} needs numbers")
        y = torch.from_numpy(values if spec.columns is not None else values[:, 0]).to(torch.float32)
        names = tuple(columns)
    task = Task(name=name, class_names=names, type=spec.type, loss=loss)
    y = as_targets(y, task.task_type)
    problem = task.task_type.check_targets(task, y)
    if problem is not None:
        where = ", ".join(repr(c) for c in columns)
        raise DataError(f"{table.path}: column {where} ({key}): {spec.type} task {name!r} {problem}")
    return task, y


# --------------------------------------------------------------------------------------------------------- splits


def split_of_rows(table: Table, options: TableData) -> np.ndarray:
    """Per row, 0 train, 1 val, 2 test: from ``split_column``, or a seeded draw of ``test_fraction`` test rows."""
    n = len(table)
    if options.split_column is not None:
        column = options.split_column
        codes = np.empty(n, dtype=np.int64)
        for i, v in enumerate(table.cells(column)):
            value = "" if v is None else text(v).lower()
            if value not in SPLITS:
                shown = "an empty cell" if v is None else repr(text(v))
                raise table.error(column, "data.split_column", f"{shown}; each row's split is train, val or test", i)
            codes[i] = SPLITS.index(value)
        where = f"column {column!r} (data.split_column)"
    else:
        generator = torch.Generator().manual_seed(options.split_seed)
        order = torch.randperm(n, generator=generator).numpy()
        n_test = min(n, max(1, round(n * options.test_fraction)))
        codes = np.full(n, _TRAIN, dtype=np.int64)
        codes[order[:n_test]] = _TEST
        where = f"test_fraction {options.test_fraction} of {n} rows (data.test_fraction)"
    for code, name in ((_TRAIN, "train"), (_TEST, "test")):
        if not (codes == code).any():
            raise DataError(f"{table.path}: {where}: no {name} rows; the run needs both a train and a test split")
    return codes


def check_labelled(path: Path, task: Task, spec: TableTask, train_targets: Tensor) -> None:
    if not task.task_type.labelled(train_targets).any():
        where = ", ".join(repr(c) for c in spec.source_columns)
        key = f"data.tasks.{task.name}.column" + ("s" if spec.columns is not None else "")
        raise DataError(
            f"{path}: column {where} ({key}): task {task.name!r} has no label in the training split (every train "
            "cell is empty)"
        )


# --------------------------------------------------------------------------------------------------------- images


def decode_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8: (H, W) when its mode is grey (L, 1, I, F, LA), else (H, W, 3) RGB; resized to ``size``
    ([H, W], bilinear) when given. Pillow's errors propagate."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.mode.startswith("I"):  # 16-bit grey (PNG): scale 0-65535 to 0-255 rather than clip
            wide = np.asarray(image, dtype=np.float64) / 257.0
            converted = Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8), "L")
        else:
            grey = image.getbands() in (("L",), ("1",), ("F",), ("L", "A"))
            if image.mode == "P":  # a palette image is grey when every colour of its palette is
                palette = image.getpalette() or []
                grey = all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))
            converted = image.convert("L" if grey else "RGB")
    if size is not None and converted.size != (size[1], size[0]):
        converted = converted.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(converted, dtype=np.uint8)


def _workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _in_threads(function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[function(item) for item in items]`` in a thread pool, in chunks (hashing and Pillow release the GIL).

    The first error (in item order) is raised once the chunks already running finish; the chunks not started are
    cancelled, so a bad file early in a large table is reported at once."""
    workers = _workers()
    if workers == 1 or len(items) < 16:
        return [function(item) for item in items]
    chunk = max(1, min(256, math.ceil(len(items) / (workers * 4))))
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mtlab-table")
    try:
        futures = [pool.submit(lambda part: [function(item) for item in part], part) for part in chunks]
        return [result for future in futures for result in future.result()]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class ImageFiles:
    """The distinct image files a table names, with the first row naming each (for error messages)."""

    def __init__(self, table: Table, column: str):
        self.table = table
        self.column = column
        base = table.path.parent
        self.files: list[Path] = []
        self.first_row: list[int] = []
        position: dict[Path, int] = {}
        rows = []
        for i, v in enumerate(table.cells(column)):
            if v is None:
                raise table.error(column, "data.image_column", "empty cell; every row needs an image", i)
            file = Path(text(v)).expanduser()
            file = file if file.is_absolute() else base / file
            if file not in position:
                position[file] = len(self.files)
                self.files.append(file)
                self.first_row.append(i)
            rows.append(position[file])
        self.row_index = torch.tensor(rows, dtype=torch.long)
        missing = [k for k, f in enumerate(self.files) if not f.is_file()]
        if missing:
            k = missing[0]
            more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
            raise self.error(k, f"image {self.files[k]} not found{more}")

    def error(self, k: int, message: str) -> DataError:
        return self.table.error(self.column, "data.image_column", message, self.first_row[k])

    def digest(self) -> str:
        """SHA-256 over the SHA-256 of every file's content, in order."""

        def file_digest(k: int) -> str:
            try:
                with self.files[k].open("rb") as f:
                    h = hashlib.sha256()
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                    return h.hexdigest()
            except OSError as e:
                raise self.error(k, f"cannot read image {self.files[k]} ({e.strerror or e})") from None

        combined = hashlib.sha256()
        for d in _in_threads(file_digest, range(len(self.files))):
            combined.update(d.encode())
        return combined.hexdigest()

    def decode(self, size: tuple[int, int] | None) -> Tensor:
        """(U, C, H, W) uint8, one image per distinct file."""
        try:
            from PIL import Image
        except ImportError:
            raise DataError(
                f"{self.table.path}: reading images needs Pillow; `pip install pillow` (data.image_column)"
            ) from None

        def one(k: int) -> np.ndarray:
            try:
                return decode_image(self.files[k], size)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                detail = " ".join(str(e).split()) or type(e).__name__
                raise self.error(k, f"cannot read image {self.files[k]} ({detail})") from None

        arrays = _in_threads(one, range(len(self.files)))
        shapes = [a.shape[:2] for a in arrays]
        if size is None and len(set(shapes)) > 1:
            k = next(k for k, s in enumerate(shapes) if s != shapes[0])
            raise self.error(
                k,
                f"images differ in size ({self.files[0].name} is {shapes[0][0]}x{shapes[0][1]}, {self.files[k].name} "
                f"is {shapes[k][0]}x{shapes[k][1]} (HxW)); set data.image_size: [H, W] to resize them all",
            )
        if all(a.ndim == 2 for a in arrays):
            stacked = np.stack(arrays)[:, None]  # (U, 1, H, W)
        else:
            colour = [np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
            stacked = np.stack(colour).transpose(0, 3, 1, 2)  # (U, 3, H, W)
        return torch.from_numpy(np.ascontiguousarray(stacked))

    def images(self, size: tuple[int, int] | None) -> Tensor:
        """(N, C, H, W) uint8, one image per row: decoded, or from the cache when every file is unchanged."""
        from mtlab.data.derived import cached_tensors

        description = {
            "images": self.digest(),
            "count": len(self.files),
            "image_size": list(size) if size is not None else None,
            "image_format": IMAGE_FORMAT,
        }
        tensors, _, _ = cached_tensors("table", description, lambda: {"images": self.decode(size)})
        return tensors["images"][self.row_index]


# ----------------------------------------------------------------------------------------------------------- load


def feature_inputs(table: Table, columns: list[str]) -> Tensor:
    key = "data.feature_columns"
    values = number_columns(table, columns, key, what="features must be numbers")
    for j, column in enumerate(columns):
        empty = np.isnan(values[:, j])
        if empty.any():
            raise table.error(column, key, "empty (or NaN) cell; features cannot be missing", _first_bad(empty))
    return torch.from_numpy(values).to(torch.float32)


def load_table(options: TableData) -> Dataset:
    from mtlab.data.dataset import Dataset

    table = Table(options.path, read_table(options.path))
    # Every column the config names exists, before anything is parsed.
    if options.image_column is not None:
        table.require(options.image_column, "data.image_column")
    for column in options.feature_columns or []:
        table.require(column, "data.feature_columns")
    if options.split_column is not None:
        table.require(options.split_column, "data.split_column")
    for name, spec in options.tasks.items():
        for column in spec.source_columns:
            table.require(column, f"data.tasks.{name}.column" + ("s" if spec.columns is not None else ""))

    codes = split_of_rows(table, options)
    train_rows = torch.from_numpy(np.flatnonzero(codes == _TRAIN))
    tasks: dict[str, Task] = {}
    targets: dict[str, Tensor] = {}
    notes: list[str] = []
    for name, spec in options.tasks.items():
        task, y = task_targets(table, name, spec)
        check_labelled(table.path, task, spec, y[train_rows])
        tasks[name], targets[name] = task, y
        if task.task_type.target_format() == "classes" and spec.classes is None:
            notes.append(found_classes_note(name, spec.source_columns[0], task.class_names))

    # The inputs last: decoding is the slow part, and every cheap check has passed by now.
    if options.image_column is not None:
        inputs = ImageFiles(table, options.image_column).images(options.image_size)
    else:
        inputs = feature_inputs(table, list(options.feature_columns or []))

    splits = {code: _split(inputs, targets, codes == code) for code in (_TRAIN, _VAL, _TEST)}
    return Dataset(
        name=options.dataset,
        tasks=tasks,
        train=splits[_TRAIN],
        test=splits[_TEST],
        origin=str(options.path),
        val=splits[_VAL] if (codes == _VAL).any() else None,
        notes=notes,
    )


def found_classes_note(task: str, column: str, names: Sequence[str], most: int = 20) -> str:
    """``task shape: 4 classes found in column 'shape': circle, square, squre, triangle (...)``: the classes of a
    task that declares none, every value of its column one of them - a typo in the data makes a class of its own."""
    listed = ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
    return (
        f"task {task}: {len(names)} classes found in column {column!r}: {listed} (declare data.tasks.{task}.classes "
        "to have any other value refused)"
    )


def _split(inputs: Tensor, targets: dict[str, Tensor], rows: np.ndarray) -> Split:
    from mtlab.data.dataset import Split

    index = torch.from_numpy(np.flatnonzero(rows))
    return Split(inputs[index], {t: y[index] for t, y in targets.items()})
