"""Per-replica, per-task loss and accuracy sums kept as tensors during an epoch (no host sync per batch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def replica_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of each replica: logits (K, B, classes), labels (K, B) -> (K,)."""
    k, b = labels.shape
    return F.cross_entropy(logits.reshape(k * b, -1), labels.reshape(-1), reduction="none").view(k, b).mean(1)


class EpochTotals:
    """Running sums over the batches of one pass, for K replicas: summed losses, correct counts and, optionally,
    confusion matrices.

    ``add`` takes each replica's batch-mean loss per task and weights it by the batch size, so the reported loss is
    the exact mean over examples even when the last batch is smaller.
    """

    def __init__(self, num_classes: dict[str, int], replicas: int, device: torch.device, confusion: bool = False):
        self.num_classes = num_classes
        self.count = 0
        self.total_loss = torch.zeros(replicas, device=device)
        self.loss = {t: torch.zeros(replicas, device=device) for t in num_classes}
        self.correct = {t: torch.zeros(replicas, dtype=torch.long, device=device) for t in num_classes}
        self.weights: Tensor | None = None  # summed per-step task weights (K, T), training passes only
        self.steps = 0
        self.confusion = (
            {t: torch.zeros(replicas, n * n, dtype=torch.long, device=device) for t, n in num_classes.items()}
            if confusion
            else None
        )

    def add(
        self,
        total: Tensor,
        losses: dict[str, Tensor],
        logits: dict[str, Tensor],
        labels: dict[str, Tensor],
        weights: Tensor | None = None,
    ) -> None:
        """``total`` and ``losses[t]`` (K,); ``logits[t]`` (K, B, classes); ``labels[t]`` (K, B); ``weights`` (K, T)
        the task weights a weighting method used on this batch (recorded as their mean over steps)."""
        if weights is not None:
            weights = weights.detach().to(self.total_loss.device, torch.float32)
            self.weights = weights if self.weights is None else self.weights + weights
            self.steps += 1
        n = next(iter(labels.values())).shape[1]
        self.count += n
        self.total_loss += total.detach() * n
        for t, classes in self.num_classes.items():
            pred = logits[t].detach().argmax(-1)  # (K, B)
            self.loss[t] += losses[t].detach() * n
            self.correct[t] += (pred == labels[t]).sum(1)
            if self.confusion is not None:
                # Row = true class, column = predicted class, flattened; offset per replica for one bincount.
                k = pred.shape[0]
                cells = labels[t] * classes + pred + torch.arange(k, device=pred.device)[:, None] * classes**2
                self.confusion[t] += torch.bincount(cells.flatten(), minlength=k * classes**2).view(k, -1)

    def summary(self, prefix: str) -> list[dict[str, float]]:
        """Per replica: ``{prefix.loss, prefix.<task>.loss, prefix.<task>.acc}`` as plain floats."""
        n = max(self.count, 1)
        total = (self.total_loss.double() / n).tolist()
        losses = {t: (v.double() / n).tolist() for t, v in self.loss.items()}
        accuracy = {t: (v.double() / n).tolist() for t, v in self.correct.items()}
        weights = (self.weights.double() / self.steps).tolist() if self.weights is not None else None
        records = []
        for k, value in enumerate(total):
            record = {f"{prefix}.loss": value}
            for i, t in enumerate(self.num_classes):
                record[f"{prefix}.{t}.loss"] = losses[t][k]
                record[f"{prefix}.{t}.acc"] = accuracy[t][k]
                if weights is not None:
                    record[f"{prefix}.{t}.weight"] = weights[k][i]
            records.append(record)
        return records

    def mean_losses(self) -> Tensor:
        """(K, T) mean loss of each task over the pass so far, in the order of ``num_classes``."""
        return torch.stack([self.loss[t] / max(self.count, 1) for t in self.num_classes], dim=1)

    def confusion_matrices(self, k: int) -> dict[str, list[list[int]]]:
        if self.confusion is None:
            return {}
        return {t: m[k].view(self.num_classes[t], -1).tolist() for t, m in self.confusion.items()}
