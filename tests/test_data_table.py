"""The ``table`` (CSV / Parquet) and ``arrays`` (.npz) datasets: real Fashion-MNIST images exported as PNG / JPEG,
typed targets with missing labels, splits, the decoded-image cache, relative paths, and one clear error per mistake."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mtlab.data.table as table_module
from mtlab.config.load import load_config, parse_config
from mtlab.config.schema import RunConfig
from mtlab.data import derived
from mtlab.data.idx import read_idx
from mtlab.errors import ConfigError, DataError

EMBEDDED = Path(table_module.__file__).resolve().parents[1] / "embedded" / "fashion-mnist-sample"
ITEMS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SHOES = {5, 7, 9}
N = 60
MODEL = {"trunk": {"type": "mlp", "widths": [16]}}


def fashion(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(EMBEDDED / "t10k-images-idx3-ubyte.gz")[:n]
    labels = read_idx(EMBEDDED / "t10k-labels-idx1-ubyte.gz")[:n]
    return images, labels


def coloured(image: np.ndarray) -> np.ndarray:
    """A real RGB picture made from a grey one (H, W, 3)."""
    return np.stack([image, 255 - image, image // 2], axis=-1)


def split_of(i: int) -> str:
    return {4: "val", 5: "test"}.get(i % 6, "train")


def config(data: dict, model: dict | None = None) -> RunConfig:
    return RunConfig.model_validate({"data": data, "model": model or MODEL})


def load(data: dict, seed: int = 0):
    return config(data).data.load(seed)


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def faces(tmp_path):
    """``faces/labels.csv`` and ``faces/labels.parquet`` naming 60 real images under ``faces/img``: every third
    one RGB, image 6 a (grey) JPEG, the rest grey PNGs. Returns (table path, expected pixels (N, 3, 28, 28), source
    images and labels)."""
    images, labels = fashion()
    root = tmp_path / "faces"
    (root / "img").mkdir(parents=True)
    rows, expected = [], []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        name = f"img/{i:03d}.jpg" if i == 6 else f"img/{i:03d}.png"
        if i % 3 == 1:
            Image.fromarray(coloured(image), "RGB").save(root / name)
            expected.append(coloured(image).transpose(2, 0, 1))
        else:
            Image.fromarray(image, "L").save(root / name, **({"quality": 95} if name.endswith(".jpg") else {}))
            expected.append(np.repeat(image[None], 3, axis=0))
        columns_used = (image > 0).any(0)
        rows.append(
            {
                "file": name,
                "brightness": f"{image.mean() / 255:.6f}",
                "height": int((image > 0).any(1).sum()),
                "width": int(columns_used.sum()),
                "bright": int(image.mean() > 80),
                "wide": "true" if columns_used.sum() > 20 else "false",
                "kind": "shoe" if int(label) in SHOES else "clothing",
                "item": "" if i == 3 else ITEMS[int(label)],
                "split": split_of(i),
            }
        )
    path = write_csv(root / "labels.csv", rows)
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.to_parquet(root / "labels.parquet")
    return path, np.stack(expected), images, labels


TASKS = {
    "brightness": {"type": "regression", "column": "brightness"},
    "size": {"type": "regression", "columns": ["height", "width"], "loss": "huber"},
    "look": {"type": "multilabel", "columns": ["bright", "wide"]},
    "kind": {"type": "binary", "column": "kind"},
    "item": {"type": "multiclass", "column": "item"},
}


def image_data(path: Path, **extra) -> dict:
    return {
        "dataset": "table",
        "path": str(path),
        "image_column": "file",
        "split_column": "split",
        "tasks": TASKS,
        **extra,
    }


# ----------------------------------------------------------------------------------------------------------- table


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_images_and_typed_targets(faces, suffix):
    path, expected, images, labels = faces
    dataset = load(image_data(path.with_suffix(suffix)))
    rows = {s: [i for i in range(N) if split_of(i) == s] for s in ("train", "val", "test")}
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (40, 10, 10)
    assert dataset.input_shape == (3, 28, 28)
    assert dataset.origin == str(path.with_suffix(suffix))
    assert list(dataset.tasks) == list(TASKS)
    for name, split in (("train", dataset.train), ("val", dataset.val), ("test", dataset.test)):
        index = rows[name]
        assert split.images.dtype == torch.uint8
        png = [k for k, i in enumerate(index) if i != 6]
        assert torch.equal(split.images[png], torch.from_numpy(expected[index][png]))  # PNG is lossless
        y = split.labels
        assert y["brightness"].dtype == torch.float32
        assert y["brightness"].shape == (len(index),)
        torch.testing.assert_close(
            y["brightness"], torch.tensor(images[index].mean((1, 2)) / 255, dtype=torch.float32), atol=1e-5, rtol=0
        )
        assert y["size"].shape == (len(index), 2)
        assert y["size"].dtype == torch.float32
        assert y["look"].shape == (len(index), 2)
        assert y["look"].dtype == torch.float32
        assert torch.equal(y["look"][:, 0], torch.tensor((images[index].mean((1, 2)) > 80).astype(np.float32)))
        assert torch.equal(y["kind"], torch.tensor([float(int(labels[i]) in SHOES) for i in index]))
        assert y["item"].dtype == torch.long
    # The JPEG (row 7, a grey image in a colour set) decodes close to its source.
    k = rows["train"].index(6)
    jpeg = dataset.train.images[k].float()
    assert (jpeg - torch.from_numpy(expected[6]).float()).abs().mean() < 4
    # The empty item cell (row 4, image 3) is a missing label; the classes are the sorted distinct values.
    assert dataset.train.labels["item"][rows["train"].index(3)] == -1
    item = dataset.tasks["item"]
    present = sorted({ITEMS[int(labels[i])] for i in range(N) if i != 3})
    assert item.class_names == tuple(present)
    assert item.type == "multiclass"
    assert dataset.tasks["kind"].class_names == ("clothing", "shoe")
    assert dataset.tasks["look"].class_names == ("bright", "wide")
    assert dataset.tasks["size"].class_names == ("height", "width")
    assert dataset.tasks["size"].loss == "huber"
    assert dataset.tasks["brightness"].class_names == ("brightness",)
    assert dataset.tasks["brightness"].loss == "mse"
    for name, task in dataset.tasks.items():
        for split in (dataset.train, dataset.val, dataset.test):
            assert task.task_type.check_targets(task, split.labels[name]) is None
    names = [ITEMS[int(labels[i])] for i in rows["test"]]
    assert [item.class_names[c] for c in dataset.test.labels["item"].tolist()] == names


def test_grey_images_one_channel_and_resized(tmp_path):
    images, labels = fashion(12)
    rows = []
    for i, image in enumerate(images):
        Image.fromarray(image, "L").save(tmp_path / f"{i}.png")
        rows.append({"file": f"{i}.png", "label": int(labels[i]), "split": "test" if i < 3 else "train"})
    path = write_csv(tmp_path / "t.csv", rows)
    data = {
        "dataset": "table",
        "path": str(path),
        "image_column": "file",
        "split_column": "split",
        "tasks": {"label": {"type": "multiclass", "column": "label"}},
    }
    full = load(data)
    assert full.train.images.shape == (9, 1, 28, 28)
    assert torch.equal(full.test.images[:, 0], torch.from_numpy(images[:3]))
    small = load({**data, "image_size": [14, 20]})
    assert small.train.images.shape == (9, 1, 14, 20)
    assert small.train.images.dtype == torch.uint8
    expected = np.array(Image.fromarray(images[0]).resize((20, 14), Image.Resampling.BILINEAR))
    assert torch.equal(small.test.images[0, 0], torch.from_numpy(expected))
    # Numeric class values are sorted as numbers (10 would follow 9) and named as written.
    assert full.tasks["label"].class_names == tuple(str(c) for c in sorted({int(c) for c in labels}))


def test_features_and_seeded_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    rows = [{"x1": x[i, 0], "x2": x[i, 1], "x3": x[i, 2], "y": i % 4, "z": 2 * x[i, 0]} for i in range(50)]
    path = write_csv(tmp_path / "f.csv", rows)
    data = {
        "dataset": "table",
        "path": str(path),
        "feature_columns": ["x1", "x2", "x3"],
        "tasks": {"y": {"type": "multiclass", "column": "y"}, "z": {"type": "regression", "column": "z"}},
    }
    a, b = load(data, seed=0), load(data, seed=7)
    assert a.train.images.dtype == torch.float32
    assert a.train.images.shape == (40, 3)
    assert a.input_shape == (3,)
    assert len(a.test) == 10
    assert a.val is None
    assert torch.equal(a.test.images, b.test.images)  # the run seed does not move the test split
    together = torch.cat([a.train.images, a.test.images])
    torch.testing.assert_close(together.sort(0).values, torch.tensor(x, dtype=torch.float32).sort(0).values)
    torch.testing.assert_close(a.train.labels["z"], 2 * a.train.images[:, 0])
    other = load({**data, "split_seed": 1, "test_fraction": 0.3})
    assert len(other.test) == 15
    assert not torch.equal(other.test.images[:10], a.test.images)
    assert load({**data, "split_seed": 1, "test_fraction": 0.3}).test.images.equal(other.test.images)


def test_binary_values_and_positive(tmp_path):
    rows = [{"x": i, "yes": ["true", "false", ""][i % 3], "ab": "ab"[i % 2], "n": i % 2} for i in range(12)]
    path = write_csv(tmp_path / "b.csv", rows)
    tasks = {
        "yes": {"type": "binary", "column": "yes"},
        "ab": {"type": "binary", "column": "ab", "positive": "a"},
        "n": {"type": "binary", "column": "n"},
    }
    d = load({"dataset": "table", "path": str(path), "feature_columns": ["x"], "tasks": tasks, "test_fraction": 0.25})
    together = {t: torch.cat([d.train.labels[t], d.test.labels[t]]) for t in tasks}
    order = torch.cat([d.train.images[:, 0], d.test.images[:, 0]]).long()
    yes = torch.tensor([[1.0, 0.0, float("nan")][i % 3] for i in order.tolist()])
    torch.testing.assert_close(together["yes"], yes, equal_nan=True)
    assert torch.equal(together["ab"], (order % 2 == 0).float())
    assert torch.equal(together["n"], (order % 2).float())
    assert d.tasks["yes"].class_names == ("false", "true")
    assert d.tasks["ab"].class_names == ("b", "a")
    assert d.tasks["n"].class_names == ("0", "1")


def test_decoded_images_are_cached_by_content(faces, monkeypatch):
    path, *_ = faces
    data = image_data(path)
    original = table_module.decode_image
    first = load(data)
    assert len(derived.cached_entries("table")) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again")

    derived._load.cache_clear()  # as a new process
    monkeypatch.setattr(table_module, "decode_image", refuse)
    second = load(data)
    assert torch.equal(first.train.images, second.train.images)
    # A touched but unchanged file is not decoded again; a changed file (same name, new content) is, never stale.
    os.utime(path.parent / "img/000.png", (1, 1))
    assert torch.equal(load(data).train.images, first.train.images)
    images, _ = fashion()
    Image.fromarray(images[-1], "L").save(path.parent / "img/000.png")
    with pytest.raises(AssertionError, match="decoded again"):
        load(data)
    calls = []
    monkeypatch.setattr(table_module, "decode_image", lambda *a: calls.append(a) or original(*a))
    third = load(data)
    assert len(calls) == N
    assert torch.equal(third.train.images[0], torch.from_numpy(np.repeat(images[-1][None], 3, axis=0)))
    assert torch.equal(third.train.images[1:], first.train.images[1:])
    assert len(derived.cached_entries("table")) == 2


def test_paths_relative_to_the_config_and_the_table(faces, tmp_path, monkeypatch):
    path, expected, *_ = faces
    config_file = tmp_path / "runs" / "faces.yaml"
    config_file.parent.mkdir()
    config_file.write_text(
        "data:\n  dataset: table\n  path: ../faces/labels.csv\n  image_column: file\n  split_column: split\n"
        "  tasks:\n    kind: {type: binary, column: kind}\nmodel:\n  trunk: {type: mlp, widths: [16]}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = load_config(config_file)
    assert run.data.path.resolve() == path.resolve()
    dataset = run.data.load(0)
    assert torch.equal(dataset.train.images[0], torch.from_numpy(expected[0]))
    assert list(dataset.tasks) == ["kind"]
    assert run.task_type_names() == {"kind": "binary"}


# ----------------------------------------------------------------------------------------------------- table errors


def feature_table(tmp_path: Path, **columns: list) -> Path:
    n = len(next(iter(columns.values())))
    return write_csv(tmp_path / "t.csv", [{k: v[i] for k, v in columns.items()} for i in range(n)])


def load_features(path: Path, tasks: dict, **extra):
    return load({"dataset": "table", "path": str(path), "feature_columns": ["x"], "tasks": tasks, **extra})


REG = {"y": {"type": "regression", "column": "y"}}


def test_missing_and_unreadable_table(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: table not found \(data\.path"):
        load_features(tmp_path / "nope.csv", REG)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"bad\.parquet: cannot read the table as Parquet"):
        load_features(tmp_path / "bad.parquet", REG)
    (tmp_path / "bad.csv").write_bytes(b"x,y\n\xff\xfe,1\n")
    with pytest.raises(DataError, match=r"bad\.csv: cannot read the table as CSV"):
        load_features(tmp_path / "bad.csv", REG)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_features(tmp_path / "empty.csv", REG)


@pytest.mark.parametrize(
    ("columns", "tasks", "extra", "message"),
    [
        (
            {"x": [1, 2], "y": [1, 2]},
            {"y": {"type": "regression", "column": "age"}},
            {},
            r"t\.csv: no column 'age' \(data\.tasks\.y\.column\); the table has columns 'x', 'y'",
        ),
        ({"x": [1, 2], "y": [1, 2]}, REG, {"split_column": "part"}, r"no column 'part' \(data\.split_column\)"),
        (
            {"x": [1, 2, 3], "y": ["a", "b", "c"]},
            {"y": {"type": "multiclass", "column": "y", "classes": ["a", "b"]}},
            {},
            r"t\.csv: column 'y' \(data\.tasks\.y\.column\), row 3: value 'c' is not one of the declared classes",
        ),
        (
            {"x": [1, 2, 3], "y": [1, "abc", 3]},
            REG,
            {},
            r"column 'y' \(data\.tasks\.y\.column\), row 2: 'abc' is not a number",
        ),
        (
            {"x": [1, 2, 3], "y": [1, "inf", 3]},
            REG,
            {},
            r"column 'y' \(data\.tasks\.y\.column\), row 2: holds the infinite value",
        ),
        (
            {"x": [1, "", 3], "y": [1, 2, 3]},
            REG,
            {},
            r"column 'x' \(data\.feature_columns\), row 2: empty \(or NaN\) cell; features cannot",
        ),
        (
            {"x": [1, "one", 3], "y": [1, 2, 3]},
            REG,
            {},
            r"column 'x' \(data\.feature_columns\), row 2: 'one' is not a number",
        ),
        (
            {"x": [1, "-inf", 3], "y": [1, 2, 3]},
            REG,
            {},
            r"column 'x' \(data\.feature_columns\), row 2: holds the infinite",
        ),
        (
            {"x": [1, 2, 3], "y": ["a", "b", "c"]},
            {"y": {"type": "binary", "column": "y"}},
            {},
            r"column 'y' \(data\.tasks\.y\.column\): holds 3 distinct values \['a', 'b', 'c'\]; a binary task has two",
        ),
        ({"x": [1, 2, 3], "y": ["a", "a", "a"]}, {"y": {"type": "binary", "column": "y"}}, {}, "set positive"),
        (
            {"x": [1, 2, 3], "y": ["0", "1", "0"]},
            {"y": {"type": "binary", "column": "y", "positive": "yes"}},
            {},
            "the positive value 'yes' .* never occurs",
        ),
        (
            {"x": [1, 2, 3], "y": ["1", "2", "0"]},
            {"y": {"type": "multilabel", "columns": ["y"]}},
            {},
            r"column 'y' \(data\.tasks\.y\.columns\), row 2: holds '2'; a multilabel column holds 0/1",
        ),
        (
            {"x": [1, 2, 3], "y": ["", "", 5], "s": ["train", "train", "test"]},
            REG,
            {"split_column": "s"},
            r"column 'y' \(data\.tasks\.y\.column\): task 'y' has no label in the training split",
        ),
        (
            {"x": [1, 2, 3], "y": [1, 2, 3], "s": ["train", "training", "test"]},
            REG,
            {"split_column": "s"},
            r"column 's' \(data\.split_column\), row 2: 'training'; each row's split is train, val or test",
        ),
        (
            {"x": [1, 2, 3], "y": [1, 2, 3], "s": ["train", "", "test"]},
            REG,
            {"split_column": "s"},
            r"row 2: an empty cell; each row's split",
        ),
        (
            {"x": [1, 2, 3], "y": [1, 2, 3], "s": ["train", "val", "train"]},
            REG,
            {"split_column": "s"},
            r"column 's' \(data\.split_column\): no test rows",
        ),
        ({"x": [1, 2], "y": [1, 2], "s": ["test", "val"]}, REG, {"split_column": "s"}, "no train rows"),
        ({"x": [1], "y": [1]}, REG, {}, r"test_fraction 0\.2 of 1 rows \(data\.test_fraction\): no train rows"),
    ],
)
def test_table_errors(tmp_path, columns, tasks, extra, message):
    path = feature_table(tmp_path, **columns)
    with pytest.raises(DataError, match=message) as caught:
        load_features(path, tasks, **extra)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_image_errors(faces, tmp_path):
    path, *_ = faces
    root = path.parent
    rows = list(csv.DictReader(path.open()))
    missing = write_csv(root / "missing.csv", [*rows[:2], {**rows[2], "file": "img/gone.png"}, *rows[3:]])
    with pytest.raises(
        DataError, match=r"missing\.csv: column 'file' \(data\.image_column\), row 3: image .*gone\.png not found"
    ):
        load(image_data(missing))
    (root / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    broken = write_csv(root / "broken.csv", [{**rows[0], "file": "img/broken.png"}, *rows[1:]])
    with pytest.raises(
        DataError, match=r"broken\.csv: column 'file' \(data\.image_column\), row 1: cannot read image .*broken\.png"
    ):
        load(image_data(broken))
    Image.fromarray(np.zeros((20, 24), dtype=np.uint8)).save(root / "img" / "small.png")
    mixed = write_csv(root / "mixed.csv", [*rows[:5], {**rows[5], "file": "img/small.png"}, *rows[6:]])
    with pytest.raises(DataError, match=r"row 6: images differ in size .*small\.png is 20x24.*set data\.image_size"):
        load(image_data(mixed))
    assert load(image_data(mixed, image_size=[28, 28])).train.images.shape[1:] == (3, 28, 28)
    empty = write_csv(root / "empty.csv", [{**rows[0], "file": ""}, *rows[1:]])
    with pytest.raises(DataError, match=r"row 1: empty cell; every row needs an image"):
        load(image_data(empty))
    # Every check on the cells runs before any image is decoded.
    bad_split = write_csv(root / "bad_split.csv", [*rows[:-1], {**rows[-1], "split": "dev", "file": "img/gone.png"}])
    with pytest.raises(DataError, match="'dev'; each row's split"):
        load(image_data(bad_split))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"feature_columns": ["x"], "image_column": "f"}, "exactly one of image_column"),
        ({}, "exactly one of image_column"),
        ({"feature_columns": ["x"], "image_size": [8, 8]}, "data.image_size: resizes images"),
        ({"feature_columns": ["x"], "tasks": {}}, "needs at least one task"),
        ({"feature_columns": ["x"], "tasks": {"a.b": {"type": "regression", "column": "y"}}}, "must be an identifier"),
        ({"feature_columns": ["x"], "tasks": {"y": {"type": "ordinal", "column": "y"}}}, "unknown task type 'ordinal'"),
        (
            {"feature_columns": ["x"], "tasks": {"y": {"type": "binary", "columns": ["y", "z"]}}},
            "use column, not columns",
        ),
        ({"feature_columns": ["x"], "tasks": {"y": {"type": "regression"}}}, "exactly one of column"),
        (
            {"feature_columns": ["x"], "tasks": {"y": {"type": "regression", "column": "y", "loss": "mae"}}},
            "loss 'mae'",
        ),
        ({"feature_columns": ["x"], "tasks": {"y": {"type": "binary", "column": "y", "loss": "l1"}}}, "loss applies"),
        (
            {"feature_columns": ["x"], "tasks": {"y": {"type": "regression", "column": "y", "classes": [1]}}},
            "classes apply to multiclass",
        ),
        (
            {"feature_columns": ["x"], "tasks": {"y": {"type": "multiclass", "column": "y", "positive": 1}}},
            "positive applies to binary",
        ),
        ({"feature_columns": ["x"], "test_fraction": 1.0}, "data.test_fraction"),
        ({"image_column": "f", "image_size": [0, 8]}, "two positive sizes"),
    ],
)
def test_table_config_errors(data, message):
    raw = {"data": {"dataset": "table", "path": "t.csv", "tasks": REG, **data}, "model": MODEL}
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_features_need_dense_trunks():
    raw = {
        "data": {"dataset": "table", "path": "t.csv", "feature_columns": ["x"], "tasks": REG},
        "model": {"trunk": {"type": "cnn", "conv": [{"filters": 4}]}},
    }
    with pytest.raises(ConfigError, match=r"data\.feature_columns: features are flat vectors"):
        parse_config(raw)


def test_classes_declared_in_yaml_as_numbers(tmp_path):
    path = feature_table(tmp_path, x=[1, 2, 3, 4, 5], y=[0, 2, "", 2, 0])
    tasks = {"y": {"type": "multiclass", "column": "y", "classes": [0, 1, 2]}}
    d = load_features(path, tasks, test_fraction=0.2)
    assert d.tasks["y"].class_names == ("0", "1", "2")
    both = torch.cat([d.train.labels["y"], d.test.labels["y"]])
    order = torch.cat([d.train.images[:, 0], d.test.images[:, 0]]).long()
    assert both.tolist() == [[0, 2, -1, 2, 0][i - 1] for i in order.tolist()]


# ---------------------------------------------------------------------------------------------------------- arrays


@pytest.fixture
def npz(tmp_path):
    images, labels = fashion()
    x = images[:, None]  # (N, 1, 28, 28) uint8
    rng = np.random.default_rng(0)
    shoe = np.array([float(int(c) in SHOES) for c in labels], dtype=np.float32)
    shoe[2] = np.nan
    arrays = {}
    for split, part in (("train", slice(0, 40)), ("val", slice(40, 50)), ("test", slice(50, 60))):
        arrays[f"x_{split}"] = x[part]
        arrays[f"y_{split}_item"] = labels[part].astype(np.int64)
        arrays[f"y_{split}_shoe"] = shoe[part]
        arrays[f"y_{split}_stats"] = np.stack([images[part].mean((1, 2)), images[part].std((1, 2))], axis=1)
        arrays[f"y_{split}_look"] = rng.integers(0, 2, (len(images[part]), 3)).astype(np.uint8)
    path = tmp_path / "data" / "fashion.npz"
    path.parent.mkdir()
    np.savez(path, **arrays)
    return path, arrays


ARRAY_TASKS = {
    "item": {"type": "multiclass"},
    "shoe": {"type": "binary", "classes": ["other", "shoe"]},
    "stats": {"type": "regression", "classes": ["mean", "std"], "loss": "l1"},
    "look": {"type": "multilabel"},
}


def test_arrays(npz, tmp_path):
    path, arrays = npz
    run = RunConfig.model_validate(
        {"data": {"dataset": "arrays", "path": "data/fashion.npz", "tasks": ARRAY_TASKS}, "model": MODEL},
        context={"base": tmp_path},
    )
    assert run.data.path == path
    d = run.data.load(0)
    assert (len(d.train), len(d.val), len(d.test)) == (40, 10, 10)
    assert d.train.images.dtype == torch.uint8
    assert d.input_shape == (1, 28, 28)
    assert torch.equal(d.test.images, torch.from_numpy(arrays["x_test"]))
    assert d.train.labels["item"].dtype == torch.long
    assert torch.equal(d.val.labels["item"], torch.from_numpy(arrays["y_val_item"]))
    largest = max(int(arrays[f"y_{s}_item"].max()) for s in ("train", "val", "test"))
    assert d.tasks["item"].class_names == tuple(str(i) for i in range(largest + 1))
    assert torch.isnan(d.train.labels["shoe"][2])
    assert d.train.labels["shoe"].dtype == torch.float32
    assert d.tasks["shoe"].class_names == ("other", "shoe")
    assert d.train.labels["stats"].shape == (40, 2)
    assert d.tasks["stats"].loss == "l1"
    assert d.tasks["look"].class_names == ("0", "1", "2")
    assert d.train.labels["look"].dtype == torch.float32
    assert d.origin == str(path)


def test_arrays_float_images_and_features(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "a.npz"
    np.savez(
        path,
        x_train=rng.random((8, 3, 4, 4)),
        x_test=rng.random((2, 3, 4, 4)),
        y_train_v=rng.random(8),
        y_test_v=rng.random(2),
    )
    d = load({"dataset": "arrays", "path": str(path), "tasks": {"v": {"type": "regression"}}})
    assert d.train.images.dtype == torch.float32
    assert d.val is None
    assert d.tasks["v"].class_names == ("v",)
    np.savez(
        path,
        x_train=rng.integers(0, 9, (8, 5)),
        x_test=rng.integers(0, 9, (2, 5)),
        y_train_c=np.array([0, 1, 2, np.nan, 0, 1, 2, 0]),
        y_test_c=np.array([1.0, 2.0]),
    )
    d = load({"dataset": "arrays", "path": str(path), "tasks": {"c": {"type": "multiclass"}}})
    assert d.train.images.dtype == torch.float32
    assert d.input_shape == (5,)
    assert d.train.labels["c"].tolist() == [0, 1, 2, -1, 0, 1, 2, 0]
    assert d.tasks["c"].num_classes == 3


def _arrays_error(path: Path, tasks: dict, message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        load({"dataset": "arrays", "path": str(path), "tasks": tasks})
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_arrays_errors(npz, tmp_path):
    path, arrays = npz
    _arrays_error(tmp_path / "none.npz", ARRAY_TASKS, r"none\.npz: arrays file not found \(data\.path")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    _arrays_error(tmp_path / "junk.npz", ARRAY_TASKS, r"junk\.npz: cannot read as \.npz")
    _arrays_error(
        path,
        {"age": {"type": "regression"}},
        r"no array 'y_train_age' \(the train targets of task 'age' \(data\.tasks\.age\)\); the file holds "
        r"\['x_test', 'x_train', 'x_val', 'y_test_item'",
    )

    def variant(**changes):
        target = tmp_path / "v.npz"
        np.savez(target, **{k: v for k, v in {**arrays, **changes}.items() if v is not None})
        return target

    _arrays_error(
        variant(y_test_item=arrays["y_test_item"][:-1]),
        ARRAY_TASKS,
        r"arrays 'x_test' and 'y_test_item' differ in length \(10 and 9\)",
    )
    _arrays_error(
        variant(x_train=arrays["x_train"][:, 0]),
        ARRAY_TASKS,
        r"array 'x_train' has shape \(40, 28, 28\); inputs are images \(N, C, H, W\) or features",
    )
    nan_x = arrays["x_test"].astype(np.float32)
    nan_x[3, 0, 1, 1] = np.nan
    _arrays_error(variant(x_test=nan_x), ARRAY_TASKS, r"array 'x_test' holds NaN in example 3")
    inf_y = arrays["y_val_stats"].copy()
    inf_y[4, 1] = np.inf
    _arrays_error(variant(y_val_stats=inf_y), ARRAY_TASKS, r"array 'y_val_stats' holds an infinite value at example 4")
    few = {**ARRAY_TASKS, "item": {"type": "multiclass", "classes": ["a", "b"]}}
    _arrays_error(
        path,
        few,
        r"array 'y_train_item' holds class index \d at example \d+, but data\.tasks\.item\.classes "
        r"declares 2 classes",
    )
    _arrays_error(
        variant(y_train_item=arrays["y_train_item"][:, None]),
        ARRAY_TASKS,
        r"'y_train_item' has shape \(40, 1\); class indices are one per example",
    )
    _arrays_error(
        variant(y_train_look=arrays["y_train_look"][:, 0]),
        ARRAY_TASKS,
        r"'y_train_look' has shape \(40,\); the task's targets are \(N, L\)",
    )
    bad_binary = arrays["y_train_shoe"].copy()
    bad_binary[0] = 2
    _arrays_error(variant(y_train_shoe=bad_binary), ARRAY_TASKS, r"'y_train_shoe' \(binary task 'shoe'.*holds 2\.0")
    _arrays_error(variant(x_val=None), ARRAY_TASKS, r"'y_val_\w+' is a validation target, but the file has no 'x_val'")
    _arrays_error(
        path,
        {**ARRAY_TASKS, "stats": {"type": "regression", "classes": ["mean"]}},
        r"data\.tasks\.stats\.classes names 1 values, but task 'stats' has 2 columns",
    )
    unlabelled = np.full(40, np.nan, dtype=np.float32)
    _arrays_error(variant(y_train_shoe=unlabelled), ARRAY_TASKS, r"'y_train_shoe' has no label for task 'shoe'")
