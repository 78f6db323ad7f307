"""NYUv2 and Cityscapes in the MTAN repository's preprocessed layout, on small synthetic files written in that exact
layout (``<root>/{train,val}/<folder>/<i>.npy``; the real files cannot be downloaded here)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlab.cli.main import main
from mtlab.data import load_dataset
from mtlab.data.cityscapes import CityscapesData
from mtlab.data.mtan_layout import write_example_files
from mtlab.data.nyuv2 import CLASSES, FOLDERS, SIZE, Nyuv2Data
from mtlab.errors import DataError

NYU_FOLDERS = {"image": "image", **FOLDERS}


@pytest.fixture
def nyu(tmp_path):
    """Three training and two test images of NYUv2 under ``tmp_path / 'nyuv2'``."""
    write_example_files(tmp_path / "nyuv2", NYU_FOLDERS, SIZE, {"train": 3, "val": 2}, len(CLASSES), seed=1)
    return tmp_path


def _load(data_dir, **options):
    return load_dataset(Nyuv2Data(dataset="nyuv2", data_dir=data_dir, check_counts=False, **options))


def test_nyuv2_reads_every_array_in_place(nyu):
    dataset = _load(nyu)
    root = nyu / "nyuv2"
    assert dataset.origin == str(root)
    assert list(dataset.tasks) == ["segmentation", "depth", "normal"]
    assert [t.type for t in dataset.tasks.values()] == ["segmentation", "depth", "normals"]
    assert dataset.tasks["segmentation"].class_names == CLASSES
    assert (len(dataset.train), len(dataset.test)) == (3, 2)  # val/ is the test split
    assert dataset.input_shape == (3, 288, 384)
    assert dataset.train.images.dtype == torch.uint8  # the RGB values are multiples of 1/255
    split, i = dataset.test, 1
    image = np.load(root / "val" / "image" / f"{i}.npy")  # (H, W, 3) in [0, 1]
    label = np.load(root / "val" / "label" / f"{i}.npy")  # (H, W), -1 for none
    depth = np.load(root / "val" / "depth" / f"{i}.npy")  # (H, W, 1), 0 for none
    normal = np.load(root / "val" / "normal" / f"{i}.npy")  # (H, W, 3), zero vector for none
    assert np.array_equal(split.images[i].numpy(), np.rint(np.moveaxis(image, -1, 0) * 255))
    assert split.labels["segmentation"].dtype == torch.int16
    assert np.array_equal(split.labels["segmentation"][i].numpy(), label)
    assert (label == -1).any()
    stored_depth = split.labels["depth"][i, 0].numpy()  # (H, W)
    assert np.array_equal(np.isnan(stored_depth), depth[..., 0] == 0)
    assert np.array_equal(stored_depth[depth[..., 0] > 0], depth[..., 0][depth[..., 0] > 0])
    stored_normal = split.labels["normal"][i].numpy()  # (3, H, W)
    none = ~normal.any(-1)
    assert none.any()
    assert np.isnan(stored_normal[:, none]).all()
    assert np.array_equal(stored_normal[:, ~none], np.moveaxis(normal, -1, 0)[:, ~none])


def test_nyuv2_images_off_the_8_bit_grid_stay_float(nyu):
    path = nyu / "nyuv2" / "train" / "image" / "1.npy"
    image = np.load(path) * np.float32(0.999)
    np.save(path, image)
    dataset = _load(nyu)
    assert dataset.train.images.dtype == torch.float32
    assert torch.equal(dataset.train.images[1], torch.from_numpy(np.moveaxis(image, -1, 0)))
    first = np.load(nyu / "nyuv2" / "train" / "image" / "0.npy")  # read as uint8 first, converted exactly after
    assert torch.allclose(dataset.train.images[0], torch.from_numpy(np.moveaxis(first, -1, 0)), atol=1e-7)


def test_nyuv2_published_counts_are_checked(nyu):
    with pytest.raises(DataError, match=r"train/image: holds 3 arrays, expected the published 795"):
        load_dataset(Nyuv2Data(dataset="nyuv2", data_dir=nyu))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "train" / "depth" / "1.npy").unlink(), r"train/depth: the arrays must be 0.npy .. 1.npy, but"),
        (lambda r: (r / "val" / "normal" / "2.npy").write_bytes(b""), r"val/normal: holds 3 arrays but .*holds 2"),
        (lambda r: np.save(r / "train" / "depth" / "0.npy", np.ones(SIZE)), r"depth/0.npy: holds a float64 array of "),
        (lambda r: (r / "train" / "label" / "2.npy").write_bytes(b"junk"), r"label/2.npy: not a readable .npy array"),
        (lambda r: np.save(r / "val" / "label" / "0.npy", np.full(SIZE, 13.0)), r"'segmentation' holds class index 13"),
        (lambda r: np.save(r / "val" / "label" / "1.npy", np.full(SIZE, 2.5)), r"label/1.npy: holds 2.5, not a class"),
        (lambda r: np.save(r / "train" / "image" / "0.npy", np.full((*SIZE, 3), 200.0)), r"lie in \[200, 200\]"),
        (lambda r: np.save(r / "train" / "depth" / "2.npy", -np.ones((*SIZE, 1))), r"depth/2.npy: holds the negative"),
    ],
)
def test_nyuv2_damaged_files_are_one_data_error_naming_the_file(nyu, damage, message):
    damage(nyu / "nyuv2")
    with pytest.raises(DataError, match=message) as excinfo:
        _load(nyu)
    assert "nyuv2.zip" in str(excinfo.value)  # where to get intact files


def test_nyuv2_not_found_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MTLAB_DATA", raising=False)
    with pytest.raises(DataError) as excinfo:
        _load(tmp_path)
    message = str(excinfo.value)
    assert message.startswith("nyuv2 files not found (no train/image in any of: ")
    assert str(tmp_path / "nyuv2") in message
    assert "https://www.dropbox.com/s/p2nn02wijg7peiy/nyuv2.zip" in message


def test_nyuv2_bad_data_on_the_command_line_is_one_error_line(nyu, tmp_path, capsys):
    np.save(nyu / "nyuv2" / "val" / "label" / "0.npy", np.full(SIZE, 13.0))
    config = tmp_path / "run.yaml"
    config.write_text(
        f"data: {{dataset: nyuv2, data_dir: {nyu}, check_counts: false}}\n"
        "model: {kind: multitask, trunk: {type: cnn, conv: [{filters: 4}]}}\n"
    )
    assert main(["train", str(config), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtlab: error: ")
    assert "holds class index 13, but the task has 13 classes" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_cityscapes_7_and_19_classes(tmp_path):
    root = tmp_path / "cityscapes2"
    folders = {"image": "image", "label": "label_7", "depth": "depth"}
    write_example_files(root, folders, (128, 256), {"train": 2, "val": 1}, 7, seed=2)
    write_example_files(root, {"label": "label_19"}, (128, 256), {"train": 2, "val": 1}, 19, seed=3)
    seven = load_dataset(CityscapesData(dataset="cityscapes", data_dir=tmp_path, check_counts=False))
    assert seven.origin == str(root)
    assert {name: task.type for name, task in seven.tasks.items()} == {"segmentation": "segmentation", "depth": "depth"}
    assert seven.tasks["segmentation"].class_names[:2] == ("flat", "construction")
    assert seven.input_shape == (3, 128, 256)
    label = np.load(root / "train" / "label_7" / "1.npy")
    assert np.array_equal(seven.train.labels["segmentation"][1].numpy(), label)
    depth = np.load(root / "val" / "depth" / "0.npy")[..., 0]
    assert math.isnan(seven.test.labels["depth"][0, 0][depth == 0][0])
    nineteen = load_dataset(CityscapesData(dataset="cityscapes", data_dir=tmp_path, check_counts=False, classes=19))
    assert nineteen.tasks["segmentation"].num_classes == 19
    assert np.array_equal(nineteen.train.labels["segmentation"][1].numpy(), np.load(root / "train/label_19/1.npy"))
    with pytest.raises(DataError, match=r"train/image: holds 2 arrays, expected the published 2975"):
        load_dataset(CityscapesData(dataset="cityscapes", data_dir=tmp_path))
