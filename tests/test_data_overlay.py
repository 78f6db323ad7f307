"""The multi-* composites: geometry, labels, determinism, split hygiene, a golden checksum and the on-disk cache."""

from __future__ import annotations

import dataclasses
import hashlib
import typing

import numpy as np
import pytest
import torch

from conftest import require_shared_data
from mtlab.data import derived, load_dataset
from mtlab.data.dataset import Split
from mtlab.data.fashion import FASHION_CLASSES, FashionData
from mtlab.data.idx import read_bytes, write_idx
from mtlab.data.mnist import MNIST
from mtlab.data.multi_mnist import OVERLAYS, MultiData
from mtlab.data.overlay import Geometry, compose_split, overlay
from mtlab.data.pairs import DIGITS
from mtlab.data.sources import SOURCES, RawFile
from mtlab.errors import DataError

# sha256 of the test composites of multi-fashion-sample (per_image 1, size 28, seed 0): images, then left, then right
# labels, as bytes. A change here means every stored multi-* result was made on different data.
GOLDEN_SAMPLE_TEST = "167ec9a2f7d2b760572a7d1bfd308dc1c637acfe9d580a3cafb8086dd9e2d82c"


def _digest(split: Split) -> str:
    h = hashlib.sha256()
    for tensor in (split.images, split.labels["left"], split.labels["right"]):
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()


def _fresh_process_cache():
    """Forget the composites loaded in this process, as a new process would."""
    derived._load.cache_clear()


def write_synthetic_mnist(directory, train_value=100, test_value=200, n_train=60, n_test=20):
    """IDX files in MNIST's layout: train images are one flat grey (``train_value``) with labels 0-4, test images
    another (``test_value``) with labels 5-9, so a composite shows by its pixels and labels which split it came from.
    Returns the source entry for them."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": np.full((n_train, 28, 28), train_value, dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 5, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": np.full((n_test, 28, 28), test_value, dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(5, 10, n_test).astype(np.uint8),
    }
    files = []
    for name, array in arrays.items():
        write_idx(directory / f"{name}.gz", array)
        files.append(RawFile(name, hashlib.sha256(read_bytes(directory / f"{name}.gz")).hexdigest()))
    return dataclasses.replace(MNIST, files=tuple(files))


@pytest.fixture
def synthetic_mnist(tmp_path, monkeypatch):
    source = write_synthetic_mnist(tmp_path / "data" / "mnist")
    monkeypatch.setitem(SOURCES, "mnist", source)
    _fresh_process_cache()
    return tmp_path / "data"


# ------------------------------------------------------------------------------------------------------ geometry


def test_overlay_places_left_at_the_corner_right_at_the_offset_and_keeps_the_brighter_pixel():
    left = torch.full((1, 1, 28, 28), 10, dtype=torch.uint8)
    right = torch.full((1, 1, 28, 28), 20, dtype=torch.uint8)
    right[..., :11, :] = 5  # the right image's top rows are darker than the left image they overlap
    canvas = overlay(left, right, Geometry(canvas=36, offset=6), torch.Generator().manual_seed(0))[0, 0]
    assert canvas.shape == (36, 36)
    assert (canvas[:6, :28] == 10).all()
    assert (canvas[:28, :6] == 10).all()
    assert (canvas[6:17, 6:28] == 10).all()  # overlap where right is darker: max = left
    assert (canvas[17:28, 6:28] == 20).all()  # overlap where right is brighter
    assert (canvas[28:34, 6:34] == 20).all()
    assert (canvas[17:34, 28:34] == 20).all()
    assert (canvas[6:17, 28:34] == 5).all()  # right only, its darker rows
    assert (canvas[34:, :] == 0).all()
    assert (canvas[:, 34:] == 0).all()
    assert (canvas[:6, 28:] == 0).all()


def test_resize_is_pil_nearest():
    pil = pytest.importorskip("PIL.Image")
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    resized = overlay(images, images, Geometry(size=28), torch.Generator().manual_seed(0))
    full = overlay(images, images, Geometry(size=36), torch.Generator().manual_seed(0))
    for i in range(3):
        expected = np.asarray(pil.fromarray(full[i, 0].numpy()).resize((28, 28), pil.NEAREST))
        assert np.array_equal(resized[i, 0].numpy(), expected)


def test_shifts_move_each_image_within_the_bound_and_lose_what_leaves_the_canvas():
    n, shift = 400, 3
    dot = torch.zeros((n, 1, 28, 28), dtype=torch.uint8)
    dot[..., 0, 0] = 255  # one lit pixel at the image's corner: the composite shows where the image went
    blank = torch.zeros_like(dot)
    canvas = overlay(dot, blank, Geometry(shift=shift), torch.Generator().manual_seed(1))  # (n, 1, 36, 36)
    lit = canvas[:, 0].flatten(1).argmax(1)
    visible = canvas[:, 0].flatten(1).amax(1) > 0
    rows, cols = lit[visible] // 36, lit[visible] % 36
    assert rows.max() <= shift
    assert cols.max() <= shift
    assert set(rows.tolist()) == set(range(shift + 1))  # every in-canvas shift occurs
    # A negative shift pushes the corner pixel off the canvas: P(both axes >= 0) = (4/7)^2, about a third visible.
    assert 0.2 < visible.float().mean() < 0.5


# ------------------------------------------------------------------------------------------ the built datasets


def test_the_schema_the_tasks_and_the_recipes_name_the_same_datasets():
    names = typing.get_args(MultiData.model_fields["dataset"].annotation)
    assert set(names) == set(OVERLAYS)
    for name in OVERLAYS:
        assert MultiData(dataset=name).task_names() == ["left", "right"]


def test_sample_composites_have_the_papers_shape_and_both_label_sets():
    data = load_dataset(MultiData(dataset="multi-fashion-sample"))
    assert data.train.images.shape == (6000, 1, 36, 36)
    assert data.train.images.dtype == torch.uint8
    assert data.test.images.shape == (2000, 1, 36, 36)
    assert data.tasks["left"].class_names == FASHION_CLASSES == data.tasks["right"].class_names
    source = load_dataset(FashionData(dataset="fashion-mnist-sample"))
    for split, original in ((data.train, source.train), (data.test, source.test)):
        # Image i of the source is the top-left image of composites i and i + M, and keeps its label.
        assert torch.equal(split.labels["left"], original.labels["item"].repeat(2))
        assert torch.equal(split.images[: len(original), :, :6, :28], original.images[:, :, :6, :])
        for task in ("left", "right"):
            counts = torch.bincount(split.labels[task], minlength=10)
            assert len(counts) == 10
            assert counts.min() > 0
    assert not torch.equal(data.train.labels["left"], data.train.labels["right"])


def test_golden_checksum_of_a_small_constructed_set():
    data = load_dataset(MultiData(dataset="multi-fashion-sample", per_image=1, size=28))
    assert data.test.images.shape == (1000, 1, 28, 28)
    assert _digest(data.test) == GOLDEN_SAMPLE_TEST


def test_construction_is_a_function_of_the_seed(tmp_path, monkeypatch):
    first = load_dataset(MultiData(dataset="multi-fashion-sample", shift=2))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))  # a fresh build, not the cached one
    _fresh_process_cache()
    again = load_dataset(MultiData(dataset="multi-fashion-sample", shift=2))
    other = load_dataset(MultiData(dataset="multi-fashion-sample", shift=2, construction_seed=1))
    assert _digest(first.train) == _digest(again.train)
    assert _digest(first.test) == _digest(again.test)
    assert _digest(first.train) != _digest(other.train)
    # The run seed is not the construction seed: every run of a study sees the same composites.
    run_seed_7 = load_dataset(MultiData(dataset="multi-fashion-sample", shift=2), seed=7)
    assert _digest(run_seed_7.train) == _digest(first.train)


def test_test_composites_come_only_from_the_test_split(synthetic_mnist):
    data = load_dataset(MultiData(dataset="multi-mnist", data_dir=synthetic_mnist))
    assert len(data.train) == 120
    assert len(data.test) == 40
    assert set(data.train.images.unique().tolist()) == {0, 100}
    assert set(data.test.images.unique().tolist()) == {0, 200}
    for task in ("left", "right"):
        assert data.train.labels[task].max() <= 4
        assert data.test.labels[task].min() >= 5
    assert data.tasks["left"].class_names == DIGITS


def test_fashion_plus_mnist_puts_the_item_top_left_and_the_digit_bottom_right():
    require_shared_data()
    data = load_dataset(MultiData(dataset="multi-fashion-mnist", per_image=1))
    assert data.tasks["left"].class_names == FASHION_CLASSES
    assert data.tasks["right"].class_names == DIGITS
    assert data.train.images.shape == (60000, 1, 36, 36)
    assert data.test.images.shape == (10000, 1, 36, 36)


def test_multi_mnist_sample_needs_the_embedded_mnist_sample():
    if "mnist-sample" in SOURCES:
        data = load_dataset(MultiData(dataset="multi-mnist-sample"))
        assert data.tasks["left"].class_names == DIGITS
        assert data.origin == "embedded"
        assert len(data.train) == 2 * len(load_dataset(_mnist_sample_config()).train)
    else:
        with pytest.raises(DataError, match="embedded mnist-sample, which this installation of mtlab does not ship"):
            load_dataset(MultiData(dataset="multi-mnist-sample"))


def _mnist_sample_config():
    from pydantic import TypeAdapter

    from mtlab.config.schema import DataConfig

    return TypeAdapter(DataConfig).validate_python({"dataset": "mnist-sample"})


def test_offset_must_keep_the_right_image_on_the_canvas():
    with pytest.raises(ValueError, match="past the 36-pixel canvas"):
        MultiData(dataset="multi-mnist", offset=9)


# ---------------------------------------------------------------------------------------------------- the cache


def test_a_second_load_reads_the_cache_and_builds_nothing(monkeypatch):
    config = MultiData(dataset="multi-fashion-sample", per_image=1)
    first = load_dataset(config)
    assert len(derived.cached_entries("multi-fashion-sample")) == 1
    _fresh_process_cache()

    def no_build(*args, **kwargs):
        raise AssertionError("built again instead of loading the cache")

    monkeypatch.setattr("mtlab.data.overlay.compose_split", no_build)
    second = load_dataset(config)
    assert _digest(second.train) == _digest(first.train)
    assert _digest(second.test) == _digest(first.test)


def test_a_changed_parameter_never_reads_a_stale_entry():
    base = load_dataset(MultiData(dataset="multi-fashion-sample", per_image=1))
    moved = load_dataset(MultiData(dataset="multi-fashion-sample", per_image=1, offset=8))
    assert len(derived.cached_entries("multi-fashion-sample")) == 2
    assert _digest(base.train) != _digest(moved.train)
    assert not derived.cached_entries("multi-fashion")  # another dataset's name is not a prefix match


def test_a_changed_source_file_invalidates_the_cache(synthetic_mnist, monkeypatch):
    config = MultiData(dataset="multi-mnist", data_dir=synthetic_mnist)
    before = load_dataset(config)
    # New content for the training images (and the catalogue's checksum of it, as a new release would bring).
    monkeypatch.setitem(SOURCES, "mnist", write_synthetic_mnist(synthetic_mnist / "mnist", train_value=150))
    _fresh_process_cache()
    after = load_dataset(config)
    assert len(derived.cached_entries("multi-mnist")) == 2
    assert set(before.train.images.unique().tolist()) == {0, 100}
    assert set(after.train.images.unique().tolist()) == {0, 150}


def test_a_damaged_entry_is_rebuilt():
    config = MultiData(dataset="multi-fashion-sample", per_image=1)
    first = load_dataset(config)
    (entry,) = derived.cached_entries("multi-fashion-sample")
    entry.write_bytes(b"not a torch file")
    _fresh_process_cache()
    assert _digest(load_dataset(config).train) == _digest(first.train)
    assert entry.stat().st_size > 1000  # rewritten


def test_pca_runs_on_composites(tmp_path):
    from mtlab.analysis.pca import analyze_pca, write_pca

    analysis = analyze_pca("multi-fashion-sample", subset=600)
    assert analysis.task == "left"
    assert analysis.fit.ratios.shape == (600,)
    assert analysis.counts[0.95] > 2
    paths = write_pca(analysis, tmp_path / "pca")
    assert all(p.exists() for p in paths.values())


def test_compose_split_repeats_each_left_image_per_image_times():
    images = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 1, 28, 28).contiguous()
    split = Split(images, {"class": torch.arange(5)})
    composed = compose_split(split, split, per_image=3, geometry=Geometry(), seed=0, stream="t")
    assert torch.equal(composed.labels["left"], torch.arange(5).repeat(3))
    assert torch.equal(composed.images[:, 0, 0, 0], torch.arange(5, dtype=torch.uint8).repeat(3))
    assert torch.equal(composed.images[:, 0, 35, 35], torch.zeros(15, dtype=torch.uint8))
    assert torch.equal(composed.images[:, 0, 33, 33].long(), composed.labels["right"])
