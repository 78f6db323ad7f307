"""The digit-pairs protocol, on synthetic MNIST whose pixels encode each image's split and index, and on real MNIST."""

from __future__ import annotations

import pytest
import torch

from conftest import require_shared_data
from mtlab.data import Dataset, Split, Task, load_dataset
from mtlab.data.mnist_pairs import MnistPairsData
from mtlab.data.pairs import draw_pairs, make_pairs, pool
from mtlab.errors import ConfigError

TRAIN_SIZE, TEST_SIZE = 120, 60  # image i of train has all pixels = i; of test, all pixels = 128 + i


def _split(size: int, offset: int) -> Split:
    values = torch.arange(size, dtype=torch.uint8) + offset
    images = values.view(size, 1, 1, 1).expand(size, 1, 28, 28).contiguous()
    return Split(images, {"digit": (torch.arange(size) * 7) % 10})


def _mnist() -> Dataset:
    tasks = {"digit": Task("digit", tuple("0123456789"))}
    return Dataset("mnist", tasks, _split(TRAIN_SIZE, 0), _split(TEST_SIZE, 128), "synthetic")


def _pixel_ids(images: torch.Tensor) -> torch.Tensor:
    """(n, 2, 14, 14) constant pooled images -> (n, 2) original pixel values (split offset + index)."""
    return (images[:, :, 0, 0] * 255).round().long()


def test_pool_is_the_mean_of_each_2x2_block():
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pooled = pool(images)
    assert pooled.shape == (3, 1, 14, 14)
    assert pooled.dtype == torch.float32
    n, y, x = 2, 5, 9
    block = images[n, 0, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2].double() / 255
    assert pooled[n, 0, y, x].item() == pytest.approx(block.mean().item(), abs=1e-7)
    assert pooled.min() >= 0.0
    assert pooled.max() <= 1.0


def test_targets_follow_the_digits_and_images_are_used_once():
    mnist = _mnist()
    pairs = draw_pairs(mnist.train, 50, torch.Generator().manual_seed(1))
    assert pairs.images.shape == (50, 2, 14, 14)
    ids = _pixel_ids(pairs.images)
    assert len(set(ids.flatten().tolist())) == 100  # 2n distinct images
    digits = mnist.train.labels["digit"]
    assert torch.equal(pairs.labels["digit_a"], digits[ids[:, 0]])
    assert torch.equal(pairs.labels["digit_b"], digits[ids[:, 1]])
    assert torch.equal(pairs.labels["leq"], (digits[ids[:, 0]] <= digits[ids[:, 1]]).long())
    assert set(pairs.labels["leq"].tolist()) == {0, 1}


def test_train_pairs_come_from_train_and_test_pairs_from_test():
    dataset = make_pairs(_mnist(), 30, seed=0)
    train_ids, test_ids = _pixel_ids(dataset.train.images), _pixel_ids(dataset.test.images)
    assert train_ids.max() < TRAIN_SIZE
    assert test_ids.min() >= 128
    assert test_ids.max() < 128 + TEST_SIZE
    assert dataset.name == "mnist-pairs"
    assert dataset.origin == "synthetic"
    assert list(dataset.tasks) == ["leq", "digit_a", "digit_b"]
    assert dataset.tasks["leq"].class_names == ("a > b", "a <= b")


def test_same_seed_same_pairs_other_seed_other_pairs():
    a, b, c = (make_pairs(_mnist(), 30, seed) for seed in (4, 4, 5))
    for split in ("train", "test"):
        assert torch.equal(getattr(a, split).images, getattr(b, split).images)
        assert not torch.equal(getattr(a, split).images, getattr(c, split).images)


def test_train_and_test_draw_from_different_streams():
    # With equally sized splits, a shared stream would pick the same positions in both.
    mnist = _mnist()
    mnist.test = _split(TRAIN_SIZE, 128)
    dataset = make_pairs(mnist, 30, seed=0)
    assert not torch.equal(_pixel_ids(dataset.train.images), _pixel_ids(dataset.test.images) - 128)


def test_too_many_pairs_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data.pairs: 31 pairs need 62 distinct images, the split has 60"):
        make_pairs(_mnist(), 31, seed=0)


def test_real_mnist_pairs():
    require_shared_data()
    dataset = load_dataset(MnistPairsData(dataset="mnist-pairs", pairs=1000), seed=3)
    assert dataset.input_shape == (2, 14, 14)
    assert dataset.train.images.dtype == torch.float32
    assert (len(dataset.train), len(dataset.test)) == (1000, 1000)
    assert dataset.train.images.min() >= 0.0
    assert dataset.train.images.max() <= 1.0
    assert dataset.origin.endswith("mnist")
    # About 55% of random digit pairs satisfy a <= b (P = 0.5 + 0.5 * P(a == b) ~= 0.55).
    assert 0.49 < dataset.train.labels["leq"].float().mean().item() < 0.61
