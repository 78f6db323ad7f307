"""Carve the splits a run uses: train / validation from the official training split, test from the official test split.

The validation split is held out from the training data (stratified on the dataset's first fully labelled
classification task, seeded; uniformly at random when there is none), so model selection and early stopping never see
the test split; the test split is evaluated once, at the end of a run. A dataset that gives its own validation split
(a table's ``split`` column) keeps it.
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


def strata(split: Split, dataset: Dataset) -> Tensor | None:
    """Class indices (N,) to stratify ``split`` on: those of the first task whose type gives strata for its targets
    (:meth:`~mtlab.tasks.TaskType.strata`: a ``multiclass`` or ``binary`` task with every label present), or None
    (then the draws are uniform)."""
    for name, task in dataset.tasks.items():
        classes = task.task_type.strata(split.labels[name])
        if classes is not None:
            return classes
    return None


def _pick(labels: Tensor | None, n: int, total: int, generator: torch.Generator) -> Tensor:
    """``total`` of ``n`` indices, sorted: stratified on ``labels`` when given, else uniformly at random."""
    if labels is not None:
        return stratified_pick(labels, total, generator)
    return torch.sort(torch.randperm(n, generator=generator)[:total]).values


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
    train, test = dataset.train, dataset.test
    if train_subset is not None and train_subset < len(train):
        train = train.select(_pick(strata(train, dataset), len(train), train_subset, generator))
    if test_subset is not None and test_subset < len(test):
        test = test.select(_pick(strata(test, dataset), len(test), test_subset, generator))
    if dataset.val is not None:  # the data gives its own validation split
        return RunSplits(train=train, val=dataset.val if val_fraction > 0 else None, test=test)
    val = None
    n_val = round(len(train) * val_fraction)
    if n_val > 0:
        val_index = _pick(strata(train, dataset), len(train), n_val, generator)
        keep = torch.ones(len(train), dtype=torch.bool)
        keep[val_index] = False
        val = train.select(val_index)
        train = train.select(keep.nonzero().squeeze(1))
    return RunSplits(train=train, val=val, test=test)
