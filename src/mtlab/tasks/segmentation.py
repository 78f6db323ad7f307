"""``segmentation``: one class out of C per pixel - cross-entropy over the labelled pixels; mIoU and pixel accuracy.

The task of the dense multi-task benchmarks (NYUv2's 13 classes, Cityscapes' 7; Liu et al. 2019, "End-to-End
Multi-Task Learning with Attention"). Outputs are logit maps (B, C, H, W); targets (N, H, W) class indices, a
pixel with a negative index (the datasets' ``-1``) being unlabelled: it adds nothing to the loss or the metrics.

``loss`` is the cross-entropy averaged over the labelled pixels of the batch (all its images pooled), as the
reference's ``F.nll_loss(..., ignore_index=-1)`` on log-softmax outputs.

The metrics come from one (C, C) confusion matrix per replica summed over the labelled pixels of the whole split
(rows: true class, columns: predicted class = argmax of the logits), so they are exact over the split - not an
average of per-batch or per-image values, which is what the MTAN reference code prints and what later code
(Nash-MTL's and LibMTL's ``ConfMatrix``) replaced with this whole-split matrix:

* ``miou`` = mean over classes of IoU_c = TP_c / (TP_c + FP_c + FN_c), over the classes with a non-empty union
  (true or predicted somewhere in the split); the same as the mean over all C classes whenever every class occurs,
  as it does in the benchmarks' test splits;
* ``pixel_acc`` = Σ_c TP_c / labelled pixels.

Targets are stored as int16 (``target_dtype``): a class map has a value per pixel (NYUv2's training split: 88 M),
and int16 holds a quarter of int64's bytes; each batch is widened here. Any signed integer dtype is accepted.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlab.tasks.base import Direction, MetricTotals, Objective, Task, TaskType, masked_mean, register_task_type

INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64)


@register_task_type
class Segmentation(TaskType):
    """Targets (N, H, W) int16 class indices (negative: unlabelled pixel); outputs (B, C, H, W) logits;
    ``task.class_names`` names the C classes."""

    name = "segmentation"
    metrics: ClassVar[dict[str, Direction]] = {"miou": "max", "pixel_acc": "max"}
    primary = "miou"
    has_confusion = True
    dense = True
    target_dtype = torch.int16

    def outputs(self, task: Task) -> int:
        if not task.class_names:
            raise ValueError(f"segmentation task {task.name!r} needs the names of its classes (class_names)")
        return task.num_classes

    def bind(self, task: Task, train_targets: list[Tensor], device: torch.device) -> Objective:
        self.outputs(task)
        return SegmentationObjective(task, len(train_targets), device)

    def check_targets(self, task: Task, targets: Tensor) -> str | None:
        if not task.class_names:
            return "is a segmentation task without class names"
        if targets.dtype not in INTEGER_DTYPES or targets.ndim != 3:
            return f"must be one class index per pixel (N, H, W) integers, got {targets.dtype} of shape " + str(
                tuple(targets.shape)
            )
        if targets.numel() and int(targets.max()) >= task.num_classes:
            return f"holds class index {int(targets.max())}, but the task has {task.num_classes} classes"
        return None


class SegmentationObjective(Objective):
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        k, b, c, h, w = outputs.shape
        mask = targets >= 0  # (K, B, H, W)
        # Every unlabelled pixel becomes -1, the ignored index (a dataset may use another negative value).
        labels = torch.where(mask, targets, -1).long().reshape(k * b, h, w)
        per_pixel = F.cross_entropy(outputs.reshape(k * b, c, h, w), labels, reduction="none", ignore_index=-1).view(
            k, b, h, w
        )
        return masked_mean(per_pixel, mask)[0]

    def totals(self, confusion: bool = False) -> MetricTotals:
        return ConfusionTotals(self.task.num_classes, self.replicas, self.device, confusion=confusion)


class ConfusionTotals(MetricTotals):
    """The (K, C, C) confusion matrix of the labelled pixels, summed with one bincount per batch for all K
    replicas (kept flat as (K, C * C) int64); always summed, since mIoU needs it, and handed out by
    :meth:`confusion` only when asked for."""

    def __init__(self, classes: int, replicas: int, device: torch.device, confusion: bool = False):
        self.classes = classes
        self.replicas = replicas
        self.asked = confusion
        self.matrix = torch.zeros(replicas, classes * classes, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros(replicas, dtype=torch.float64, device=device)
        # (K, 1, 1, 1): the first cell of replica k's matrix in the flat (K * C * C) bincount.
        self.offsets = (torch.arange(replicas, device=device) * classes * classes).view(replicas, 1, 1, 1)

    def add(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        c = self.classes
        pred = outputs.argmax(2)  # (K, B, H, W)
        mask = targets >= 0
        self.loss_sum += loss.detach().double() * mask.sum((1, 2, 3))
        cells = (targets.long() * c + pred + self.offsets)[mask]
        self.matrix += torch.bincount(cells, minlength=self.replicas * c * c).view(self.replicas, c * c)

    def summary(self) -> dict[str, list[float]]:
        matrix = self.matrix.view(self.replicas, self.classes, self.classes).double()  # (K, C, C)
        tp = torch.diagonal(matrix, dim1=1, dim2=2)  # (K, C)
        support, predicted = matrix.sum(2), matrix.sum(1)  # (K, C) true, predicted pixels per class
        union = support + predicted - tp
        seen = union > 0
        iou = torch.where(seen, tp / union.clamp_min(1), torch.zeros_like(tp))
        n = support.sum(1)
        nan = torch.full_like(n, float("nan"))
        empty = n == 0
        return {
            "loss": torch.where(empty, nan, self.loss_sum / n.clamp_min(1)).tolist(),
            "miou": torch.where(empty, nan, iou.sum(1) / seen.sum(1).clamp_min(1)).tolist(),
            "pixel_acc": torch.where(empty, nan, tp.sum(1) / n.clamp_min(1)).tolist(),
        }

    def confusion(self, k: int) -> list[list[int]] | None:
        if not self.asked:
            return None
        return self.matrix[k].view(self.classes, self.classes).tolist()
