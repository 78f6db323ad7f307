"""Every registered dataset - mtlab's and installed plug-ins' - validates its own example config, answers what it
is asked before any file is read (tasks, input shape, sources), and loads what it promises wherever its files are;
real MNIST / Fashion-MNIST counts, names and groups."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import require_shared_data
from mtlab.config.base import DATASETS, DataBase
from mtlab.data import Dataset, load_dataset, registered_datasets
from mtlab.data.fashion import FASHION_CLASSES, FashionData
from mtlab.data.idx import read_bytes, read_idx, write_idx
from mtlab.data.mnist import MnistData
from mtlab.data.mnist_pairs import MnistPairsData
from mtlab.data.resolve import embedded_dir, locate
from mtlab.data.sources import SOURCES, Source
from mtlab.errors import ConfigError, DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def example_config(name: str, workdir: Path) -> DataBase:
    """Dataset ``name``'s own example config, validated (writing any files it needs into ``workdir``)."""
    options = DATASETS.get(name)
    return options.model_validate(options.example(name, workdir))


@pytest.mark.parametrize("name", registered_datasets())
def test_every_dataset_validates_its_example_and_answers_before_reading_files(name, tmp_path):
    config = example_config(name, tmp_path)
    assert config.dataset == name
    types = config.task_types()
    assert types
    assert list(types) == config.task_names()
    assert not any("." in task for task in types)  # task names appear in metric keys (val.<task>.<metric>)
    shape = config.input_shape()
    # (D,) feature vectors, (A, W) padded molecules (mtlab.data.molecules) or (C, H, W) images
    assert shape is None or (len(shape) in (1, 2, 3) and all(isinstance(d, int) and d > 0 for d in shape))
    assert all(isinstance(source, Source) and source.name in SOURCES for source in config.sources())
    assert isinstance(config.gives_pairs, bool)


@pytest.mark.parametrize("name", registered_datasets())
def test_every_dataset_loads_its_example_with_the_tasks_and_shape_it_declares(name, tmp_path):
    """A dataset whose sources are embedded (or that has none: generated data, files its example writes) always
    loads; one that reads downloaded files loads where they are found (../shared/data here), else it is skipped."""
    config = example_config(name, tmp_path)
    absent = [s.name for s in config.sources() if not s.embedded and not getattr(locate(s), "complete", False)]
    if absent:
        pytest.skip(f"its files ({', '.join(absent)}) are not on this machine")
    for module in getattr(config, "reads_with", ()):  # an optional package the dataset reads its files with
        pytest.importorskip(module, reason=f"it reads its files with {module}, which is not installed")
    dataset = load_dataset(config)
    assert isinstance(dataset, Dataset)
    assert dataset.name == name
    assert {t: task.type for t, task in dataset.tasks.items()} == config.task_types()
    if config.input_shape() is not None:
        assert dataset.input_shape == config.input_shape()
    for split in (dataset.train, dataset.test):
        assert split.images.dtype in (torch.uint8, torch.float32)
        assert split.images.ndim in (2, 3, 4)  # feature vectors, padded molecules or images
        assert list(split.labels) == list(dataset.tasks)
        for task, labels in split.labels.items():
            kind = dataset.tasks[task].task_type
            assert labels.dtype == kind.target_dtype
            assert kind.check_targets(dataset.tasks[task], labels) is None
            assert kind.labelled(labels).any()


@pytest.mark.slow  # a second pytest process collects this file
def test_a_plug_in_dataset_is_covered_by_the_registry_tests(tmp_path):
    """The demo plug-in package's dataset (tests/plugin_package, entry point ``mtlab.datasets``) is collected and
    passes both tests above, with nothing about it in this file: run them in a process that sees the package."""
    package = Path(__file__).parent / "plugin_package"
    site = tmp_path / "site"
    shutil.copytree(package / "mtlab_demo_plugin", site / "mtlab_demo_plugin")
    info = site / "mtlab_demo_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mtlab-demo-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[mtlab.datasets]\ndemo-blobs = mtlab_demo_plugin.blobs\n[mtlab.tasks]\ncount = mtlab_demo_plugin.count\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-n", "0", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*command, "-k", "every and demo-blobs"], cwd=Path(__file__).parent, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 passed" in done.stdout


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset(MnistData(dataset="mnist", data_dir=require_shared_data(), download=False))


@pytest.fixture(scope="module")
def fashion() -> Dataset:
    return load_dataset(FashionData(dataset="fashion-mnist", data_dir=require_shared_data(), download=False))


def test_mnist(mnist):
    assert mnist.train.images.shape == (60000, 1, 28, 28)
    assert mnist.test.images.shape == (10000, 1, 28, 28)
    assert mnist.train.images.dtype == torch.uint8
    assert torch.bincount(mnist.train.labels["digit"]).tolist() == MNIST_TRAIN_COUNTS
    assert mnist.tasks["digit"].class_names == tuple("0123456789")
    assert mnist.origin == str(require_shared_data() / "mnist")


def test_fashion_items(fashion):
    assert fashion.train.images.shape == (60000, 1, 28, 28)
    assert torch.bincount(fashion.train.labels["item"]).tolist() == [6000] * 10
    assert torch.bincount(fashion.test.labels["item"]).tolist() == [1000] * 10
    assert fashion.tasks["item"].class_names == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip


def test_fashion_default_groups(fashion):
    assert fashion.tasks["group"].class_names == ("shoes", "gendered", "unisex")
    item, group = fashion.train.labels["item"], fashion.train.labels["group"]
    for members, index in (((5, 7, 9), 0), ((3, 6, 8), 1), ((0, 1, 2, 4), 2)):
        assert set(group[torch.isin(item, torch.tensor(members))].tolist()) == {index}
    assert torch.bincount(group).tolist() == [18000, 18000, 24000]


def test_fashion_custom_groups_follow_config_order():
    require_shared_data()
    groups = {"tops": [0, 2, 4, 6], "rest": [1, 3, 8], "feet": [5, 7, 9]}
    dataset = load_dataset(FashionData(dataset="fashion-mnist", groups=groups))
    assert dataset.tasks["group"].class_names == ("tops", "rest", "feet")
    item, group = dataset.test.labels["item"], dataset.test.labels["group"]
    assert group[item == 6].unique().tolist() == [0]
    assert group[item == 8].unique().tolist() == [1]
    assert group[item == 9].unique().tolist() == [2]


def test_embedded_sample_needs_no_data_and_is_stratified(monkeypatch):
    monkeypatch.delenv("MTLAB_DATA", raising=False)
    sample = load_dataset(FashionData(dataset="fashion-mnist-sample"))
    assert sample.origin == "embedded"
    assert sample.train.images.shape == (3000, 1, 28, 28)
    assert torch.bincount(sample.train.labels["item"]).tolist() == [300] * 10
    assert torch.bincount(sample.test.labels["item"]).tolist() == [100] * 10
    assert sample.tasks["item"].class_names == FASHION_CLASSES


def test_embedded_sample_holds_real_fashion_images(fashion):
    sample_images = read_idx(embedded_dir(SOURCES["fashion-mnist-sample"]) / "t10k-images-idx3-ubyte.gz")
    real = fashion.test.images.view(10000, -1)
    for i in (0, 500, 999):
        assert (real == torch.from_numpy(sample_images[i]).view(1, -1)).all(dim=1).any()


def test_embedded_sample_holds_real_mnist_images(mnist):
    sample_images = read_idx(embedded_dir(SOURCES["mnist-sample"]) / "t10k-images-idx3-ubyte.gz")
    real = mnist.test.images.view(10000, -1)
    for i in (0, 1000, 1999):
        assert (real == torch.from_numpy(sample_images[i]).view(1, -1)).all(dim=1).any()


def test_explicit_data_dir_may_hold_the_files_directly(tmp_path):
    mnist_dir = require_shared_data() / "mnist"
    dataset = load_dataset(MnistPairsData(dataset="mnist-pairs", data_dir=mnist_dir, pairs=10))
    assert dataset.origin == str(mnist_dir)


def test_missing_data_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MTLAB_DATA", raising=False)
    with pytest.raises(DataError, match=r"mnist files not found; looked in .*\(data_dir\)"):
        load_dataset(MnistData(dataset="mnist", data_dir=tmp_path))


def test_images_and_labels_must_agree(tmp_path, monkeypatch):
    """Files with the right checksums (a synthetic catalogue entry) but one label short."""
    shared = require_shared_data() / "mnist"
    directory = tmp_path / "mnist"
    directory.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        shutil.copy(shared / name, directory)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", read_idx(shared / "t10k-labels-idx1-ubyte.gz")[:-1])
    files = tuple(
        dataclasses.replace(raw, digest=raw.hash(read_bytes(directory / f"{raw.name}.gz")))
        for raw in SOURCES["mnist"].files
    )
    monkeypatch.setitem(SOURCES, "mnist", dataclasses.replace(SOURCES["mnist"], files=files))
    with pytest.raises(DataError, match="does not hold one label 0-9 per image"):
        load_dataset(MnistData(dataset="mnist", data_dir=tmp_path))


def test_unknown_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'"):
        load_dataset(SimpleNamespace(dataset="imagenet"))


def test_a_name_registers_once():
    with pytest.raises(ValueError, match="a dataset is already registered as 'mnist'"):
        DATASETS.register("mnist")(DATASETS.get("mnist-pairs"))


def test_the_embedded_mnist_sample_is_stratified_real_digits():
    sample = load_dataset(MnistData(dataset="mnist-sample"))
    assert sample.origin == "embedded"
    assert len(sample.train) == 5000
    assert len(sample.test) == 2000
    assert torch.bincount(sample.train.labels["digit"]).tolist() == [500] * 10
    assert torch.bincount(sample.test.labels["digit"]).tolist() == [200] * 10
    assert sample.train.images.shape[1:] == (1, 28, 28)


def test_digit_pairs_can_be_drawn_from_the_embedded_sample():
    pairs = load_dataset(MnistPairsData(dataset="mnist-pairs", pairs=1000, digits="mnist-sample"), seed=1)
    assert pairs.origin == "embedded"
    assert len(pairs.train) == len(pairs.test) == 1000
    with pytest.raises(ConfigError, match=r"data\.pairs: 1001 pairs need 2002 distinct images"):
        load_dataset(MnistPairsData(dataset="mnist-pairs", pairs=1001, digits="mnist-sample"), seed=1)
