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
        return ConfusionTotals(self.task.num_classes, self.replicas, self.device)


class ConfusionTotals(MetricTotals):
    """Every multiclass metric is a function of the confusion matrix (K, C, C), so that is all that is summed."""

    def __init__(self, classes: int, replicas: int, device: torch.device):
        self.classes = classes
        self.matrix = torch.zeros(replicas, classes * classes, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros(replicas, dtype=torch.float64, device=device)
        self.count = torch.zeros(replicas, dtype=torch.long, device=device)
        self.offsets = torch.arange(replicas, device=device)[:, None] * classes * classes  # (K, 1)

    def add(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        pred = outputs.argmax(-1)  # (K, B)
        mask = targets >= 0
        labelled = mask.sum(1)
        self.count += labelled
        self.loss_sum += loss.detach().double() * labelled
        # Row = true class, column = predicted class, flattened, offset per replica: one bincount for all K.
        cells = (targets * self.classes + pred + self.offsets)[mask]
        k = self.matrix.shape[0]
        self.matrix += torch.bincount(cells, minlength=k * self.classes**2).view(k, -1)

    def summary(self) -> dict[str, list[float]]:
        c = self.classes
        m = self.matrix.view(-1, c, c).double()  # (K, true, predicted)
        n = self.count.double()
        tp = m.diagonal(dim1=1, dim2=2)  # (K, C)
        support, predicted = m.sum(2), m.sum(1)
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
        return self.matrix[k].view(self.classes, self.classes).tolist()
