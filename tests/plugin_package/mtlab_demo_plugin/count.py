"""Task type ``count``: non-negative counts, Poisson regression on log-rates.

The network outputs log lambda (B, 1); the loss is the Poisson negative log-likelihood ``exp(o) - y * o`` (constant
terms dropped); the metric is the mean absolute error of the rate ``exp(o)`` against the count.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtlab.tasks.base import MetricTotals, Objective, Task, TaskType, masked_mean, register_task_type


@register_task_type
class Count(TaskType):
    name = "count"
    metrics = {"mae": "min"}  # noqa: RUF012
    primary = "mae"
    target_dtype = torch.float32

    def outputs(self, task: Task) -> int:
        return 1

    def bind(self, task: Task, train_targets: list[Tensor], device: torch.device) -> Objective:
        return CountObjective(task, len(train_targets), device)


class CountObjective(Objective):
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        log_rate = outputs[..., 0]  # (K, B)
        mask = ~torch.isnan(targets)
        y = torch.where(mask, targets, torch.zeros_like(targets))
        return masked_mean(torch.exp(log_rate) - y * log_rate, mask)[0]

    def totals(self, confusion: bool = False) -> MetricTotals:
        return CountTotals(self.replicas, self.device)


class CountTotals(MetricTotals):
    def __init__(self, replicas: int, device: torch.device):
        self.abs_error = torch.zeros(replicas, dtype=torch.float64, device=device)
        self.loss_sum = torch.zeros(replicas, dtype=torch.float64, device=device)
        self.count = torch.zeros(replicas, dtype=torch.float64, device=device)

    def add(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        mask = ~torch.isnan(targets)
        labelled = mask.sum(1).double()
        error = (torch.exp(outputs[..., 0]) - targets).abs()
        self.abs_error += torch.where(mask, error, torch.zeros_like(error)).sum(1).double()
        self.loss_sum += loss.double() * labelled
        self.count += labelled

    def summary(self) -> dict[str, list[float]]:
        n = self.count.clamp_min(1)
        nan = torch.full_like(n, float("nan"))
        empty = self.count == 0
        return {
            "loss": torch.where(empty, nan, self.loss_sum / n).tolist(),
            "mae": torch.where(empty, nan, self.abs_error / n).tolist(),
        }
