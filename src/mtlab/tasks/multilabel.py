"""``multilabel``: L independent yes/no labels per example - binary cross-entropy per label; mean accuracy, macro F1
and macro AUROC over the labels.

Each label is scored as a ``binary`` task on its labelled cells (a missing cell - NaN - counts for nothing), then
the labels are averaged with equal weight:

* ``acc`` = the mean over labels of each label's accuracy (TP + TN) / n - the "mean accuracy over attributes" the
  CelebA multi-task papers report;
* ``f1`` = the macro F1 over labels, each 2 TP / (2 TP + FP + FN), 0 for a label with no positive in the split and
  none predicted (scikit-learn's default ``zero_division``), as ``f1_score(average="macro")`` on complete labels;
* ``auroc`` = the macro AUROC over labels (each exact, see :func:`mtlab.tasks.binary.auroc`); a label with one class
  only among its labelled cells of the split has no AUROC and is left out of the mean.

A label with no labelled cell in the split is left out of every mean; a metric with no label left is NaN. ``loss``
is the binary cross-entropy averaged over the labelled cells.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from mtlab.tasks.base import Direction, Objective, Task, TaskType, register_task_type
from mtlab.tasks.binary import SigmoidObjective, zero_one_problem


@register_task_type
class Multilabel(TaskType):
    """Targets (N, L) float32 in {0, 1} (NaN: missing cell); outputs (B, L) logits; ``task.class_names`` names the
    L labels."""

    name = "multilabel"
    metrics: ClassVar[dict[str, Direction]] = {"acc": "max", "f1": "max", "auroc": "max"}
    primary = "acc"
    target_dtype = torch.float32
    targets_from = "zero_one"
    losses = ()

    def outputs(self, task: Task) -> int:
        if not task.class_names:
            raise ValueError(f"multilabel task {task.name!r} needs its label names (class_names)")
        return task.num_classes

    def bind(self, task: Task, train_targets: list[Tensor], device: torch.device) -> Objective:
        return SigmoidObjective(task, len(train_targets), device, labels=self.outputs(task))

    def check_targets(self, task: Task, targets: Tensor) -> str | None:
        if not task.class_names:
            return "is a multilabel task without label names"
        if not targets.is_floating_point() or targets.ndim != 2 or targets.shape[1] != task.num_classes:
            return (
                f"must be {task.num_classes} 0/1 floats per example (one per label), got {targets.dtype} of shape "
                f"{tuple(targets.shape)}"
            )
        return zero_one_problem(targets)
