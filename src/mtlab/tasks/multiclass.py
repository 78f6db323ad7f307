"""``multiclass``: one class out of C per example - cross-entropy; accuracy, macro F1 and a confusion matrix."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlab.tasks.base import Direction, MetricTotals, Objective, Task, TaskType, masked_mean, register_task_type


@register_task_type
class Multiclass(TaskType):
    """Targets (N,) int64 class indices (-1: missing); outputs (B, C) logits."""

    name = "multiclass"
    metrics: ClassVar[dict[str, Direction]] = {"acc": "max", "f1": "max"}
    primary = "acc"
    has_confusion = True
    target_dtype = torch.long
    losses = ()
    stratifies = True

    def outputs(self, task: Task) -> int:
        return task.num_classes

    def bind(self, task: Task, train_targets: list[Tensor], device: torch.device) -> Objective:
        return MulticlassObjective(task, len(train_targets), device)

    def check_targets(self, task: Task, targets: Tensor) -> str | None:
        present = targets[targets >= 0]
        if targets.dtype != torch.long or targets.ndim != 1:
            return f"must be one class index per example, got {targets.dtype} of shape {tuple(targets.shape)}"
        if present.numel() and int(present.max()) >= task.num_classes:
            return f"holds class index {int(present.max())}, but the task has {task.num_classes} classes"
        return None


class MulticlassObjective(Objective):
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        k, b = targets.shape
        mask = targets >= 0
        # ignore_index keeps missing labels out of the sum; the mean is then taken over the labelled ones.
        per_example = F.cross_entropy(
            outputs.reshape(k * b, -1), targets.reshape(-1), reduction="none", ignore_index=-1
        ).view(k, b)
        return masked_mean(per_example, mask)[0]

    def totals(self, confusion: bool = False) -> MetricTotals:
        return ClassCountTotals(self.task.num_classes, self.replicas, self.device, confusion=confusion)


class ClassCountTotals(MetricTotals):
    """Accuracy and macro F1 need only three counts per class - true (support), predicted and correct - summed as
    (K, C) with one bincount each for all K replicas; the (K, C, C) confusion matrix is summed only when asked for
    (the test pass), not on every training batch."""

    def __init__(self, classes: int, replicas: int, device: torch.device, confusion: bool = False):
        self.classes = classes
        self.replicas = replicas
        self.support = torch.zeros(replicas, classes, dtype=torch.long, device=device)
        self.predicted = torch.zeros(replicas, classes, dtype=torch.long, device=device)
        self.correct = torch.zeros(replicas, classes, dtype=torch.long, device=device)
        self.matrix = torch.zeros(replicas, classes * classes, dtype=torch.long, device=device) if confusion else None
        self.loss_sum = torch.zeros(replicas, dtype=torch.float64, device=device)
        self.offsets = torch.arange(replicas, device=device)[:, None]  # (K, 1) replica index, for offset bincounts

    def _count(self, cells: Tensor, width: int) -> Tensor:
        """``cells`` (n,) indices into (K, width), already offset by replica -> counts (K, width)."""
        return torch.bincount(cells, minlength=self.replicas * width).view(self.replicas, width)

    def add(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        pred = outputs.argmax(-1)  # (K, B)
        mask = targets >= 0
        c = self.classes
        self.loss_sum += loss.detach().double() * mask.sum(1)
        true_cells = (targets + self.offsets * c)[mask]
        pred_cells = (pred + self.offsets * c)[mask]
        self.support += self._count(true_cells, c)
        self.predicted += self._count(pred_cells, c)
        self.correct += self._count(true_cells[pred_cells == true_cells], c)
        if self.matrix is not None:
            # Row = true class, column = predicted class, flattened, offset per replica: one bincount for all K.
            self.matrix += self._count((targets * c + pred + self.offsets * c * c)[mask], c * c)

    def summary(self) -> dict[str, list[float]]:
        tp, support, predicted = self.correct.double(), self.support.double(), self.predicted.double()  # (K, C)
        n = support.sum(1)
        # Macro F1 over the classes present in the split or predicted (scikit-learn's labels=None behaviour);
        # a class with neither has no F1 and is left out of the mean.
        seen = (support + predicted) > 0
        f1 = torch.where(seen, 2 * tp / (support + predicted).clamp_min(1), torch.zeros_like(tp))
        macro_f1 = f1.sum(1) / seen.sum(1).clamp_min(1)
        empty = n == 0
        nan = torch.full_like(n, float("nan"))
        return {
            "loss": torch.where(empty, nan, self.loss_sum / n.clamp_min(1)).tolist(),
            "acc": torch.where(empty, nan, tp.sum(1) / n.clamp_min(1)).tolist(),
            "f1": torch.where(empty, nan, macro_f1).tolist(),
        }

    def confusion(self, k: int) -> list[list[int]] | None:
        if self.matrix is None:
            return None
        return self.matrix[k].view(self.classes, self.classes).tolist()
