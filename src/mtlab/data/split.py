"""Carve the splits a run uses: train / validation from the official training split, test from the official test split.

The validation split is held out from the training data (stratified on the dataset's first task, seeded), so model
selection and early stopping never see the test split; the test split is evaluated once, at the end of a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mtlab import seeding
from mtlab.data.dataset import Dataset, Split


@dataclass
class RunSplits:
    """The three splits of one run; ``val`` is ``None`` when ``val_fraction`` is 0."""

    train: Split
    val: Split | None
    test: Split


def stratified_counts(class_counts: Tensor, total: int) -> Tensor:
    """How many examples of each class to take so that they sum to ``total`` and follow the class proportions.

    Largest-remainder rounding: floor the exact shares, then give the leftover examples to the classes with the
    largest fractional parts (ties to the lower class index). ``class_counts`` (K,) int64 -> (K,) int64.
    """
    n = int(class_counts.sum())
    if not 0 <= total <= n:
        raise ValueError(f"cannot take {total} of {n} examples")
    exact = class_counts.double() * total / n
    counts = exact.floor().long()
    leftover = total - int(counts.sum())
    if leftover:
        # Stable sort on the negated remainders keeps lower class indices first among ties.
        order = torch.sort(-(exact - counts), stable=True).indices
        counts[order[:leftover]] += 1
    return torch.minimum(counts, class_counts)


def stratified_pick(labels: Tensor, total: int, generator: torch.Generator) -> Tensor:
    """A random stratified sample of ``total`` indices of ``labels`` (N,), returned sorted ascending."""
    n = labels.shape[0]
    perm = torch.randperm(n, generator=generator)
    # Group the shuffled indices by class: within each class the order stays random.
    by_class = perm[torch.sort(labels[perm], stable=True).indices]
    class_counts = torch.bincount(labels, minlength=int(labels.max()) + 1)
    take = stratified_counts(class_counts, total)
    starts = torch.cumsum(class_counts, 0) - class_counts  # (K,) first position of each class in by_class
    sorted_labels = labels[by_class]
    rank = torch.arange(n) - starts[sorted_labels]  # position of each example within its class
    return torch.sort(by_class[rank < take[sorted_labels]]).values


def carve_splits(
    dataset: Dataset,
    *,
    val_fraction: float,
    seed: int,
    train_subset: int | None = None,
    test_subset: int | None = None,
) -> RunSplits:
    """Subsample (optionally), then hold out a stratified validation split; all draws depend only on ``seed``."""
    generator = seeding.generator(seed, "splits")
    strata = next(iter(dataset.tasks))
    train, test = dataset.train, dataset.test
    if train_subset is not None and train_subset < len(train):
        train = train.select(stratified_pick(train.labels[strata], train_subset, generator))
    if test_subset is not None and test_subset < len(test):
        test = test.select(stratified_pick(test.labels[strata], test_subset, generator))
    val = None
    n_val = round(len(train) * val_fraction)
    if n_val > 0:
        val_index = stratified_pick(train.labels[strata], n_val, generator)
        keep = torch.ones(len(train), dtype=torch.bool)
        keep[val_index] = False
        val = train.select(val_index)
        train = train.select(keep.nonzero().squeeze(1))
    return RunSplits(train=train, val=val, test=test)
