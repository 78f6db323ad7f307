"""The data layer asks a task's type how to read, mark and stratify its targets, never its name: every registered
type answers consistently, and a plug-in type that answers like a built-in one is read like it (from a table's
cells, from arrays, in a stratified split) under its own name."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from mtlab.data.arrays import ArraysData
from mtlab.data.dataset import Dataset, Split
from mtlab.data.split import carve_splits
from mtlab.data.table import TableData
from mtlab.tasks import TASK_TYPES, Task
from mtlab.tasks.binary import Binary
from mtlab.tasks.multiclass import Multiclass
from mtlab.tasks.regression import Regression


@pytest.mark.parametrize("type_name", TASK_TYPES.names())
def test_every_task_type_answers_how_its_targets_are_read(type_name):
    kind = TASK_TYPES.get(type_name)
    assert kind.target_format() in ("classes", "two_values", "zero_one", "numbers")
    assert kind.losses is None or all(isinstance(loss, str) for loss in kind.losses)
    assert kind.one_column == (kind.target_format() in ("classes", "two_values"))
    missing = torch.tensor([kind.missing_label]).to(kind.target_dtype)
    assert not kind.labelled(missing).any()
    assert kind.class_indices <= (not kind.target_dtype.is_floating_point)
    # Strata only from fully labelled (N,) targets of a stratifying type.
    present = torch.tensor([0, 1, 1, 0]).to(kind.target_dtype)
    strata = kind.strata(present)
    assert (strata is not None) == kind.stratifies
    if strata is not None:
        assert strata.dtype == torch.long
        assert torch.equal(strata, present.long())
    assert kind.strata(torch.cat([present, missing])) is None


class Flag(Binary):
    """A plug-in's two-valued type: it answers like ``binary`` and has another name."""

    name = "flag"


class Ranked(Multiclass):
    """A plug-in's class type that stratifies (``multiclass`` under another name)."""

    name = "ranked"


class Counted(Regression):
    """A plug-in's number type with its own losses."""

    name = "counted"
    losses = ("poisson", "mse")


class Graded(Regression):
    """A plug-in's float type read from class values: its missing labels are NaN, not -1."""

    name = "graded"
    targets_from = "classes"


@pytest.fixture
def plug_in_types(monkeypatch):
    for kind in (Flag(), Ranked(), Counted(), Graded()):
        monkeypatch.setitem(TASK_TYPES._items, kind.name, kind)


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_plug_in_type_is_read_from_a_table_as_its_format_says(tmp_path, plug_in_types):
    rows = [{"x": i, "wet": ["yes", "no", ""][i % 3], "size": "SML"[i % 3], "n": i % 4, "grade": "AA "[i % 3]}
            for i in range(30)]  # fmt: skip
    tasks = {
        "grade": {"type": "graded", "column": "grade"},
        "wet": {"type": "flag", "column": "wet", "positive": "yes"},
        "size": {"type": "ranked", "column": "size", "classes": ["S", "M", "L"]},
        "n": {"type": "counted", "column": "n", "loss": "poisson"},
    }
    path = write_csv(tmp_path / "t.csv", rows)
    options = {"dataset": "table", "path": path, "feature_columns": ["x"], "tasks": tasks, "test_fraction": 0.2}
    data = TableData.model_validate(options).load(0)
    order = torch.cat([data.train.images[:, 0], data.test.images[:, 0]]).long().tolist()
    wet = torch.cat([data.train.labels["wet"], data.test.labels["wet"]])
    expected = torch.tensor([[1.0, 0.0, math.nan][i % 3] for i in order])
    torch.testing.assert_close(wet, expected, equal_nan=True)
    assert data.tasks["wet"].class_names == ("no", "yes")
    size = torch.cat([data.train.labels["size"], data.test.labels["size"]])
    assert size.dtype == torch.long
    assert size.tolist() == [i % 3 for i in order]
    assert data.tasks["n"].loss == "poisson"
    grade = torch.cat([data.train.labels["grade"], data.test.labels["grade"]])
    assert grade.dtype == torch.float32
    torch.testing.assert_close(grade, torch.tensor([[0.0, 0.0, math.nan][i % 3] for i in order]), equal_nan=True)
    assert data.tasks["grade"].class_names == ("A",)


def test_a_plug_in_types_losses_and_columns_are_checked(tmp_path, plug_in_types):
    base = {"dataset": "table", "path": str(tmp_path / "t.csv"), "feature_columns": ["x"]}
    with pytest.raises(ValidationError, match=r"loss 'l1' is not one of \['poisson', 'mse'\]"):
        TableData.model_validate({**base, "tasks": {"n": {"type": "counted", "column": "n", "loss": "l1"}}})
    with pytest.raises(ValidationError, match="a flag task reads one column"):
        TableData.model_validate({**base, "tasks": {"w": {"type": "flag", "columns": ["a", "b"]}}})
    with pytest.raises(ValidationError, match=r"loss applies to .*; a ranked task has its own loss"):
        TableData.model_validate({**base, "tasks": {"s": {"type": "ranked", "column": "s", "loss": "mse"}}})


def test_a_plug_in_type_is_read_from_arrays_as_its_format_says(tmp_path, plug_in_types):
    path = tmp_path / "a.npz"
    y = np.array([1.0, 0.0, np.nan, 1.0], dtype=np.float32)
    np.savez(path, x_train=np.zeros((4, 2), np.float32), x_test=np.zeros((4, 2), np.float32), y_train_wet=y,
             y_test_wet=y)  # fmt: skip
    data = ArraysData.model_validate({"dataset": "arrays", "path": path, "tasks": {"wet": {"type": "flag"}}}).load(0)
    assert data.tasks["wet"].class_names == ("0", "1")  # a two-valued type's default names
    torch.testing.assert_close(data.train.labels["wet"], torch.from_numpy(y), equal_nan=True)
    np.savez(path, x_train=np.zeros((4, 2), np.float32), x_test=np.zeros((4, 2), np.float32),
             y_train_wet=y[:, None], y_test_wet=y[:, None])  # fmt: skip
    with pytest.raises(Exception, match=r"\(N,\) 0/1 values"):
        ArraysData.model_validate({"dataset": "arrays", "path": path, "tasks": {"wet": {"type": "flag"}}}).load(0)


def test_a_stratifying_plug_in_type_stratifies_the_validation_split(plug_in_types):
    labels = torch.arange(1000) % 10  # 100 examples of each of 10 classes
    split = Split(torch.zeros(1000, 1), {"rank": labels})
    dataset = Dataset("ranks", {"rank": Task("rank", tuple("0123456789"), "ranked")}, split, split, "test")
    val = carve_splits(dataset, val_fraction=0.1, seed=3).val
    assert torch.bincount(val.labels["rank"]).tolist() == [10] * 10
