"""``regression``: O real-valued outputs per example - trained on standardised targets; MAE, RMSE and R² reported in
the target's own units.

Standardisation. :meth:`Regression.bind` fits, per replica k and output o, the mean m and the (population, ddof 0)
standard deviation s of replica k's training targets, ignoring missing ones (NaN); s = 0 - or no training target -
gives s = 1 (and m = 0 for no target). The network is trained to output z = (y - m) / s, so the loss does not depend
on the target's units; the prediction in units is ``output * s + m``.

``loss`` (``task.loss``) compares the output with z, per labelled cell, averaged over the labelled cells:

* ``mse``: (output - z)²;  ``l1``: |output - z|;
* ``huber``: ½ (output - z)² where |output - z| ≤ 1, |output - z| - ½ beyond (delta 1.0, in standard deviations).

The ``loss`` a pass reports is that training loss, on standardised targets; the metrics are in the target's units.
Over the labelled examples of the whole split, per output, with the error e = prediction - y:

* ``mae`` = mean |e|;  ``rmse`` = sqrt(mean e²);
* ``r2`` = 1 - Σe² / Σ(y - ȳ)², ȳ the split's mean of the output (scikit-learn's ``r2_score``: NaN with fewer than
  two examples; a constant y gives 1 for a perfect prediction, else 0).

Each is averaged over the outputs with equal weight (scikit-learn's ``multioutput="uniform_average"``), an output
with no labelled example (for ``r2``: fewer than two) left out of the average; NaN if none is left. The totals sum,
per replica and output, z, z², |output - z| and (output - z)² in float64 - in standard deviations, centred by the
training mean, so Σ(y - ȳ)² = s² (Σz² - (Σz)² / n) loses no precision to a large offset - and scale back by s.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlab.tasks.base import Direction, MetricTotals, Objective, Task, TaskType, masked_mean, register_task_type

LOSSES = ("mse", "l1", "huber")


@register_task_type
class Regression(TaskType):
    """Targets (N,) float32 for one output, or (N, O) (NaN: missing); outputs (B, O); ``task.class_names`` names the
    O ≥ 1 outputs; ``task.loss`` is ``mse``, ``l1`` or ``huber``."""

    name = "regression"
    metrics: ClassVar[dict[str, Direction]] = {"mae": "min", "rmse": "min", "r2": "max"}
    primary = "mae"
    target_dtype = torch.float32
    losses = LOSSES

    def outputs(self, task: Task) -> int:
        if not task.class_names:
            raise ValueError(f"regression task {task.name!r} needs the names of its outputs (class_names)")
        return task.num_classes

    def bind(self, task: Task, train_targets: list[Tensor], device: torch.device) -> Objective:
        if task.loss not in LOSSES:
            raise ValueError(f"regression task {task.name!r} has loss {task.loss!r}; known: {', '.join(LOSSES)}")
        o = self.outputs(task)
        means, stds = [], []
        for targets in train_targets:
            y = targets.to(device=device, dtype=torch.float64).reshape(targets.shape[0], o)  # (N, O)
            mask = ~torch.isnan(y)
            n = mask.sum(0).clamp_min(1)  # (O,)
            mean = torch.where(mask, y, 0.0).sum(0) / n  # (O,)
            std = (torch.where(mask, y - mean, 0.0).square().sum(0) / n).sqrt()  # (O,)
            means.append(mean)
            stds.append(torch.where(std > 0, std, 1.0))
        mean = torch.stack(means)[:, None, :]  # (K, 1, O)
        std = torch.stack(stds)[:, None, :]  # (K, 1, O)
        return RegressionObjective(task, len(train_targets), device, mean, std)

    def check_targets(self, task: Task, targets: Tensor) -> str | None:
        if not task.class_names:
            return "is a regression task without output names"
        o = task.num_classes
        if not targets.is_floating_point():
            return f"must be float values, got {targets.dtype}"
        if not (targets.ndim == 2 and targets.shape[1] == o) and not (targets.ndim == 1 and o == 1):
            wanted = "one float per example" if o == 1 else f"{o} floats per example (one per output)"
            return f"must be {wanted}, got shape {tuple(targets.shape)}"
        if torch.isinf(targets).any():
            return "holds infinite values"
        return None


class RegressionObjective(Objective):
    """``mean``, ``std``: (K, 1, O) float64, each replica's training-target statistics per output."""

    def __init__(self, task: Task, replicas: int, device: torch.device, mean: Tensor, std: Tensor):
        super().__init__(task, replicas, device)
        self.mean, self.std = mean, std
        self._mean32, self._std32 = mean.float(), std.float()

    def _cells(self, targets: Tensor) -> Tensor:
        """(K, B) or (K, B, O) -> (K, B, O)."""
        return targets.unsqueeze(-1) if targets.ndim == 2 else targets

    def standardise(self, targets: Tensor) -> Tensor:
        """Targets (K, B[, O]) in units -> (K, B, O) float32 standardised by each replica's training statistics."""
        return (self._cells(targets).float() - self._mean32) / self._std32

    def predictions(self, outputs: Tensor) -> Tensor:
        """Network outputs (K, B, O) -> predictions in the target's units (K, B, O) float64."""
        return outputs.double() * self.std + self.mean

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        z = self.standardise(targets)  # (K, B, O)
        mask = ~torch.isnan(z)
        # Zero at missing cells: a NaN target would reach the gradient through the loss's backward (0 * NaN).
        z = torch.where(mask, z, torch.zeros_like(z)).to(outputs.dtype)
        if self.task.loss == "mse":
            per_cell = F.mse_loss(outputs, z, reduction="none")
        elif self.task.loss == "l1":
            per_cell = F.l1_loss(outputs, z, reduction="none")
        else:
            per_cell = F.huber_loss(outputs, z, reduction="none", delta=1.0)
        return masked_mean(per_cell, mask)[0]  # (K,)

    def totals(self, confusion: bool = False) -> MetricTotals:
        return RegressionTotals(self)


class RegressionTotals(MetricTotals):
    """Sums per replica and output (K, O), float64, in standard deviations (see the module's docstring)."""

    def __init__(self, objective: RegressionObjective):
        self.objective = objective
        k, o, device = objective.replicas, objective.mean.shape[-1], objective.device
        self.n, self.z, self.z2, self.abs, self.sq = (
            torch.zeros(k, o, dtype=torch.float64, device=device) for _ in range(5)
        )
        self.loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
        self.count = torch.zeros(k, dtype=torch.long, device=device)  # labelled cells

    def add(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        obj = self.objective
        z = (obj._cells(targets).double() - obj.mean) / obj.std  # (K, B, O)
        mask = ~torch.isnan(z)
        labelled = mask.sum((1, 2))  # (K,)
        self.count += labelled
        self.loss_sum += loss.detach().double() * labelled
        zero = torch.zeros_like(z)
        error = torch.where(mask, outputs.detach().double() - z, zero)  # (K, B, O)
        z = torch.where(mask, z, zero)
        self.n += mask.sum(1)
        self.z += z.sum(1)
        self.z2 += z.square().sum(1)
        self.abs += error.abs().sum(1)
        self.sq += error.square().sum(1)

    def summary(self) -> dict[str, list[float]]:
        std = self.objective.std[:, 0, :]  # (K, O)
        n = self.n.clamp_min(1)
        nan = torch.full_like(self.n, float("nan"))
        some = self.n > 0
        mae = torch.where(some, std * self.abs / n, nan)  # (K, O)
        rmse = torch.where(some, std * (self.sq / n).sqrt(), nan)
        total = (self.z2 - self.z.square() / n).clamp_min(0)  # Σ(z - z̄)², (K, O)
        # scikit-learn's force_finite: a constant target scores 1 if predicted exactly, else 0.
        constant = torch.where(self.sq == 0, 1.0, 0.0)
        r2 = torch.where(total > 0, 1 - self.sq / total.where(total > 0, 1.0), constant)
        r2 = torch.where(self.n >= 2, r2, nan)
        count = self.count.double()
        loss = torch.where(count > 0, self.loss_sum / count.clamp_min(1), torch.full_like(count, float("nan")))
        return {
            "loss": loss.tolist(),
            "mae": torch.nanmean(mae, 1).tolist(),
            "rmse": torch.nanmean(rmse, 1).tolist(),
            "r2": torch.nanmean(r2, 1).tolist(),
        }
