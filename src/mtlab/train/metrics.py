"""Per-replica sums over the batches of one pass, kept as tensors during an epoch (no host sync per batch).

Each task's own metrics are summed by its task type's :class:`~mtlab.tasks.MetricTotals`; :class:`EpochTotals`
adds the run-level totals (the reported total loss, the task weights a weighting method used, the (K, T) mean task
losses DWA reads) and lays everything out as the flat history records ``{prefix}.{task}.{metric}``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from mtlab.tasks import Objective


class EpochTotals:
    """Running sums over the batches of one pass, for K replicas.

    ``add`` takes each replica's batch-mean loss per task and weights it by the batch size, so the reported total
    loss is the exact mean over examples even when the last batch is smaller; each task's own loss and metrics are
    means over its labelled examples (a missing label counts for nothing).
    """

    def __init__(
        self, objectives: Mapping[str, Objective], replicas: int, device: torch.device, confusion: bool = False
    ):
        self.tasks = list(objectives)
        self.per_task = {t: o.totals(confusion) for t, o in objectives.items()}
        self.confusion = confusion
        self.count = 0
        self.total_loss = torch.zeros(replicas, device=device)
        self.loss = {t: torch.zeros(replicas, device=device) for t in self.tasks}
        self.weights: Tensor | None = None  # summed per-step task weights (K, T), training passes only
        self.steps = 0

    def add(
        self,
        total: Tensor,
        losses: dict[str, Tensor],
        outputs: dict[str, Tensor],
        targets: dict[str, Tensor],
        weights: Tensor | None = None,
    ) -> None:
        """``total`` and ``losses[t]`` (K,); ``outputs[t]`` (K, B, O); ``targets[t]`` (K, B[, L]); ``weights``
        (K, T) the task weights a weighting method used on this batch (recorded as their mean over steps)."""
        if weights is not None:
            weights = weights.detach().to(self.total_loss.device, torch.float32)
            self.weights = weights if self.weights is None else self.weights + weights
            self.steps += 1
        n = next(iter(targets.values())).shape[1]
        self.count += n
        self.total_loss += total.detach() * n
        for t in self.tasks:
            loss = losses[t].detach().float()
            self.loss[t] += loss * n
            self.per_task[t].add(outputs[t].detach().float(), targets[t], loss)

    def summary(self, prefix: str) -> list[dict[str, float]]:
        """Per replica: ``{prefix.loss, prefix.<task>.<metric>}`` (``loss`` and every metric of the task's type)
        as plain floats, and ``prefix.<task>.weight`` for training passes."""
        n = max(self.count, 1)
        total = (self.total_loss.double() / n).tolist()
        metrics = {t: totals.summary() for t, totals in self.per_task.items()}
        weights = (self.weights.double() / self.steps).tolist() if self.weights is not None else None
        records = []
        for k, value in enumerate(total):
            record = {f"{prefix}.loss": value}
            for i, t in enumerate(self.tasks):
                for metric, values in metrics[t].items():
                    record[f"{prefix}.{t}.{metric}"] = values[k]
                if weights is not None:
                    record[f"{prefix}.{t}.weight"] = weights[k][i]
            records.append(record)
        return records

    def mean_losses(self) -> Tensor:
        """(K, T) mean loss of each task over the pass so far, in task order."""
        return torch.stack([self.loss[t] / max(self.count, 1) for t in self.tasks], dim=1)

    def confusion_matrices(self, k: int) -> dict[str, list[list[int]]]:
        """Replica ``k``'s confusion matrix of every task whose type has one (when asked for)."""
        if not self.confusion:
            return {}
        matrices = {t: totals.confusion(k) for t, totals in self.per_task.items()}
        return {t: m for t, m in matrices.items() if m is not None}
