"""Splits (stratified, seeded, disjoint) and whole-tensor batching with normalisation and augmentation."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlab import seeding
from mtlab.data.augment import horizontal_flip, random_crop
from mtlab.data.batches import Batches, Normalizer, ReplicaBatches
from mtlab.data.dataset import Dataset, Split
from mtlab.data.split import carve_splits, stratified_counts, stratified_pick
from mtlab.data.tasks import Task


def toy_dataset(n_train=200, n_test=50, classes=4) -> Dataset:
    g = torch.Generator().manual_seed(0)

    def split(n):
        images = torch.randint(0, 256, (n, 1, 6, 6), generator=g, dtype=torch.uint8)
        y = torch.arange(n) % classes
        return Split(images, {"a": y, "b": y % 2})

    tasks = {"a": Task("a", tuple(map(str, range(classes)))), "b": Task("b", ("even", "odd"))}
    return Dataset("toy", tasks, split(n_train), split(n_test), origin="memory")


def test_stratified_counts_golden():
    assert stratified_counts(torch.tensor([50, 30, 20]), 10).tolist() == [5, 3, 2]
    # Exact shares 3.33, 3.33, 3.33 -> one leftover goes to the lowest class index.
    assert stratified_counts(torch.tensor([10, 10, 10]), 10).tolist() == [4, 3, 3]
    assert stratified_counts(torch.tensor([7, 1]), 4).tolist() == [4, 0]  # 3.5, 0.5: tie to class 0


@settings(max_examples=50, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=2, max_size=8),
    fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31),
)
def test_stratified_pick_properties(counts, fraction, seed):
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    total = round(fraction * len(labels))
    picked = stratified_pick(labels, total, torch.Generator().manual_seed(seed))
    assert len(picked) == total
    assert len(set(picked.tolist())) == total  # no duplicates
    assert torch.equal(picked, picked.sort().values)
    per_class = torch.bincount(labels[picked], minlength=len(counts))
    expected = torch.tensor(counts, dtype=torch.float64) * total / len(labels)
    assert ((per_class - expected).abs() <= 1).all()  # within one example of the exact proportion


def test_carve_splits_is_disjoint_stratified_and_seeded():
    data = toy_dataset()
    splits = carve_splits(data, val_fraction=0.2, seed=3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (160, 40, 50)
    assert torch.bincount(splits.val.labels["a"]).tolist() == [10, 10, 10, 10]
    train_rows = {tuple(x.flatten().tolist()) for x in splits.train.images}
    assert not train_rows & {tuple(x.flatten().tolist()) for x in splits.val.images}
    again = carve_splits(data, val_fraction=0.2, seed=3)
    assert torch.equal(again.val.images, splits.val.images)
    other = carve_splits(data, val_fraction=0.2, seed=4)
    assert not torch.equal(other.val.images, splits.val.images)
    # The test split is the official one, untouched.
    assert torch.equal(splits.test.images, data.test.images)


def test_subsets_and_no_validation():
    splits = carve_splits(toy_dataset(), val_fraction=0.0, seed=0, train_subset=40, test_subset=20)
    assert splits.val is None
    assert (len(splits.train), len(splits.test)) == (40, 20)
    assert torch.bincount(splits.train.labels["a"]).tolist() == [10, 10, 10, 10]


def test_normalizer_standardises_training_pixels():
    images = torch.randint(0, 256, (64, 3, 5, 5), dtype=torch.uint8)
    x = Normalizer.fit(images)(images)
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    unit = Normalizer.fit(images, standardize=False)(images)
    assert torch.allclose(unit, images.float() / 255)


def test_batches_cover_every_example_once_per_epoch_in_seeded_order():
    split = toy_dataset(n_train=23).train
    ids = torch.arange(23)
    split = Split(split.images, {"a": split.labels["a"], "id": ids})
    batches = Batches(split, 5, Normalizer.fit(split.images), shuffle=True, generator=seeding.generator(1, "b"))
    assert len(batches) == 5
    first = torch.cat([y["id"] for _, y in batches])
    second = torch.cat([y["id"] for _, y in batches])
    assert sorted(first.tolist()) == list(range(23))
    assert not torch.equal(first, second)  # a new permutation each epoch
    again = Batches(split, 5, Normalizer.fit(split.images), shuffle=True, generator=seeding.generator(1, "b"))
    assert torch.equal(torch.cat([y["id"] for _, y in again]), first)


def test_a_last_batch_smaller_than_asked_is_merged_into_the_one_before():
    split = toy_dataset(n_train=12).train
    ids = Split(split.images, {"id": torch.arange(12)})
    normalizer = Normalizer.fit(split.images)

    def sizes(n: int, batch: int, smallest_last: int) -> list[int]:
        part = Split(ids.images[:n], {"id": ids.labels["id"][:n]})
        batches = ReplicaBatches([part], batch, [normalizer], shuffle=True, generators=[seeding.generator(0, "b")],
                                 smallest_last=smallest_last)
        seen = [y["id"][0] for _, y in batches]
        assert sorted(torch.cat(seen).tolist()) == list(range(n))  # every example once, merged or not
        assert len(batches) == len(seen)
        return [len(s) for s in seen]

    assert sizes(11, 4, 1) == [4, 4, 3]  # a method that does not split the batch: the last one is kept
    assert sizes(11, 4, 4) == [4, 7]  # double sampling: 3 left over would be halves of 1 and 2
    assert sizes(12, 4, 4) == [4, 4, 4]
    assert sizes(9, 4, 4) == [4, 5]
    assert sizes(10, 4, 4) == [4, 6]
    assert sizes(3, 4, 4) == [3]  # one batch in all: nothing to merge it with
    assert sizes(5, 2, 4) == [2, 3]  # batch 2: halves of one image anyway, the last single one joins a pair


def test_random_crop_shifts_each_image_within_padding():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    out = random_crop(x, 1, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        windows = [padded[i, :, dy : dy + 4, dx : dx + 4] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert torch.equal(random_crop(x, 0, torch.Generator()), x)


def test_horizontal_flip_flips_about_half():
    x = torch.randn(2000, 1, 3, 3)
    out = horizontal_flip(x, torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped | kept).all())
    assert 900 < int(flipped.sum()) < 1100
