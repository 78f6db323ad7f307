"""``depth``: one positive value per pixel (depth, or Cityscapes' disparity) - L1 over the valid pixels; absolute and
relative error.

The task of the dense multi-task benchmarks (Liu et al. 2019, "End-to-End Multi-Task Learning with Attention";
NYUv2 depth in metres, Cityscapes inverse depth). Outputs are maps (B, 1, H, W) in the target's own units - the
papers train on raw depth, without standardising it; targets (N, 1, H, W) float32, NaN where a pixel has no
measurement (the datasets store 0 there; their loaders turn it into NaN). A valid target must be > 0.

``loss`` is |prediction - target| averaged over the valid pixels of the batch (all its images pooled), as the
reference's ``sum(|pred - y| * mask) / count(mask)``.

Metrics, over the valid pixels of the whole split (n of them), summed per replica in float64 on the device:

* ``abs_err`` = Σ |prediction - target| / n;
* ``rel_err`` = Σ (|prediction - target| / target) / n.

These are exact over the split; the reference code prints the mean of per-batch values instead, which weighs a
pixel by its batch's count of valid pixels.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from mtlab.tasks.base import Direction, MetricTotals, Objective, Task, TaskType, masked_mean, register_task_type


@register_task_type
class Depth(TaskType):
    """Targets (N, 1, H, W) float32 > 0 (NaN: no measurement); outputs (B, 1, H, W) in the target's units."""

    name = "depth"
    metrics: ClassVar[dict[str, Direction]] = {"abs_err": "min", "rel_err": "min"}
    primary = "abs_err"
    dense = True
    target_dtype = torch.float32

    def outputs(self, task: Task) -> int:
        return 1

    def bind(self, task: Task, train_targets: list[Tensor], device: torch.device) -> Objective:
        return DepthObjective(task, len(train_targets), device)

    def check_targets(self, task: Task, targets: Tensor) -> str | None:
        if not targets.is_floating_point() or targets.ndim != 4 or targets.shape[1] != 1:
            return f"must be one float per pixel (N, 1, H, W), got {targets.dtype} of shape {tuple(targets.shape)}"
        if torch.isinf(targets).any():
            return "holds infinite values"
        if (targets <= 0).any():
            return f"holds {float(targets[targets <= 0][0])!r}; a valid depth is > 0 (NaN marks a pixel without one)"
        return None


class DepthObjective(Objective):
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        mask = ~torch.isnan(targets)  # (K, B, 1, H, W)
        # Zero at missing pixels: a NaN target would reach the gradient through the loss's backward (0 * NaN).
        y = torch.where(mask, targets, torch.zeros_like(targets)).to(outputs.dtype)
        return masked_mean((outputs - y).abs(), mask)[0]

    def totals(self, confusion: bool = False) -> MetricTotals:
        return DepthTotals(self.replicas, self.device)


class DepthTotals(MetricTotals):
    """Per replica (K,): valid pixels, Σ|e| and Σ|e|/y in float64."""

    def __init__(self, replicas: int, device: torch.device):
        self.count = torch.zeros(replicas, dtype=torch.long, device=device)
        self.abs, self.rel, self.loss_sum = (
            torch.zeros(replicas, dtype=torch.float64, device=device) for _ in range(3)
        )

    def add(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        k = targets.shape[0]
        mask = ~torch.isnan(targets)  # (K, B, 1, H, W)
        y = torch.where(mask, targets.double(), 1.0)
        error = torch.where(mask, (outputs.detach().double() - y).abs(), 0.0)
        valid = mask.reshape(k, -1).sum(1)
        self.count += valid
        self.loss_sum += loss.detach().double() * valid
        self.abs += error.reshape(k, -1).sum(1)
        self.rel += (error / y).reshape(k, -1).sum(1)

    def summary(self) -> dict[str, list[float]]:
        n = self.count.double()
        some = n > 0
        nan = torch.full_like(n, float("nan"))
        n = n.clamp_min(1)
        return {
            "loss": torch.where(some, self.loss_sum / n, nan).tolist(),
            "abs_err": torch.where(some, self.abs / n, nan).tolist(),
            "rel_err": torch.where(some, self.rel / n, nan).tolist(),
        }
