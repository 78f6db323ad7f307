"""NYUv2 and Cityscapes in the MTAN repository's preprocessed layout, on small synthetic files written in that exact
layout (``<root>/{train,val}/<folder>/<i>.npy``; the real files cannot be downloaded here)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mtlab.cli.main import main
from mtlab.config import parse_config
from mtlab.data import load_dataset, nyuv2
from mtlab.data.cityscapes import CityscapesData
from mtlab.data.mtan_layout import write_example_files
from mtlab.data.nyuv2 import CLASSES, FOLDERS, SIZE, Nyuv2Data
from mtlab.errors import ConfigError, DataError

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
        "model: {kind: segnet, filters: [4, 4]}\n"
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


def test_data_list_verify_and_fetch_cover_the_hand_placed_datasets(nyu, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "600")  # keep table cells (paths, where to get the data) on one line
    assert main(["data", "list", "--data-dir", str(nyu)]) == 0
    out = capsys.readouterr().out
    assert f"{nyu / 'nyuv2'} (data_dir)" in out
    assert "incomplete: " in out
    assert "holds 3 arrays, expected the published 795" in out
    assert "https://www.dropbox.com/s/lg2ktu7o8hzwf99/cityscapes2.zip" in out  # cityscapes: not found, where to get it
    assert main(["data", "verify", "nyuv2", "--data-dir", str(nyu)]) == 1
    assert "expected the published 795" in capsys.readouterr().out

    monkeypatch.setattr(nyuv2, "COUNTS", {"train": 3, "val": 2})  # these files as if they were the published set
    assert main(["data", "verify", "nyuv2", "--data-dir", str(nyu)]) == 0
    assert "complete: 3 train + 2 val" in capsys.readouterr().out
    np.save(nyu / "nyuv2" / "val" / "normal" / "1.npy", np.zeros((*SIZE, 2), np.float32))
    assert main(["data", "verify", "nyuv2", "--data-dir", str(nyu)]) == 1
    out = capsys.readouterr().out
    assert str(nyu / "nyuv2" / "val" / "normal" / "1.npy") in out
    assert "expected (288, 384, 3) numbers" in out

    assert main(["data", "fetch", "celeba"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtlab: error: celeba cannot be downloaded by mtlab; download img_align_celeba.zip")
    assert err.count("\n") == 1
    assert main(["data", "verify", "nyu"]) == 2
    assert capsys.readouterr().err == "mtlab: error: DATASET: unknown dataset 'nyu'; did you mean 'nyuv2'?\n"


def test_image_only_augmentation_is_refused_for_dense_tasks():
    model = {"kind": "multitask", "trunk": {"type": "cnn", "conv": [{"filters": 4}]}}
    raw = {"data": {"dataset": "nyuv2", "augment": {"horizontal_flip": True}}, "model": model}
    with pytest.raises(ConfigError, match=r"data.augment: crops and flips move only the images, not the per-pixel"):
        parse_config(raw)
    parse_config({**raw, "data": {"dataset": "celeba", "augment": {"horizontal_flip": True}}})  # images only: fine


DENSE_NET = '''
from torch import nn


class Dense(nn.Module):
    """A shared 3x3 convolution, then a 1x1 convolution per task: (B, 3, H, W) -> {task: (B, O, H, W)}."""

    def __init__(self, task_outputs, input_shape, flat):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(input_shape[0], 4, 3, padding=1), nn.ReLU())
        self.heads = nn.ModuleDict({t: nn.Conv2d(4, n, 1) for t, n in task_outputs.items()})
        self.flat = flat

    def forward(self, x):
        features = self.trunk(x)
        out = {t: head(features) for t, head in self.heads.items()}
        return {t: o.mean((2, 3)) for t, o in out.items()} if self.flat else out


def build(task_outputs, input_shape, flat=False):
    return Dense(task_outputs, input_shape, flat)
'''


def test_a_dense_network_trains_on_nyuv2_end_to_end(nyu, tmp_path, capsys):
    (tmp_path / "dense_net.py").write_text(DENSE_NET)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"data: {{dataset: nyuv2, data_dir: {nyu}, check_counts: false, val_fraction: 0.34}}\n"
        "model: {kind: custom, factory: dense_net.py:build}\n"
        "train: {epochs: 1, batch_size: 2}\n"
    )
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("segmentation.miou", "segmentation.pixel_acc", "depth.abs_err", "depth.rel_err"):
        assert 0 <= metrics["test"][f"test.{key}"] < math.inf
    assert 0 <= metrics["test"]["test.normal.median_angle"] <= 180
    assert 0 <= metrics["val"]["val.normal.within_30"] <= 1
    confusion = metrics["confusion"]["segmentation"]  # (13, 13), rows: true class, over the 2 test images
    labels = torch.from_numpy(np.stack([np.load(nyu / "nyuv2" / "val" / "label" / f"{i}.npy") for i in (0, 1)]))
    assert np.array(confusion).sum(1).tolist() == torch.bincount(labels[labels >= 0].long(), minlength=13).tolist()

    # A network that returns one vector per example for a per-pixel task is refused at build time, by shape.
    config.write_text(config.read_text().replace("dense_net.py:build}", "dense_net.py:build, options: {flat: true}}"))
    assert main(["train", str(config), "--out", str(tmp_path / "flat")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtlab: error: model.factory ")
    assert "output 'segmentation' has shape (3, 13) for a batch of 3; expected (batch, 13, 288, 384)" in err


def test_a_loaded_dataset_is_shared_until_a_file_changes(nyu):
    first = _load(nyu)
    assert _load(nyu) is first  # the seeds of a group and the runs of a study share one copy
    path = nyu / "nyuv2" / "train" / "label" / "0.npy"
    label = np.load(path)
    label[label >= 0] = 3
    np.save(path, label)  # same size; a newer mtime
    again = _load(nyu)
    assert again is not first
    assert set(again.train.labels["segmentation"][0].unique().tolist()) == {-1, 3}
