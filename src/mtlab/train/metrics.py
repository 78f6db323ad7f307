"""Per-task loss and accuracy sums kept as tensors during an epoch (no host sync per batch), read once at the end."""

from __future__ import annotations

import torch
from torch import Tensor


class EpochTotals:
    """Running sums over the batches of one pass: summed losses, correct counts and, optionally, confusion matrices.

    ``add`` takes the batch-mean loss per task (as the loss functions return) and weights it by the batch size, so
    the reported loss is the exact mean over examples even when the last batch is smaller.
    """

    def __init__(self, num_classes: dict[str, int], device: torch.device, confusion: bool = False):
        self.num_classes = num_classes
        self.count = 0
        self.loss = {t: torch.zeros((), device=device) for t in num_classes}
        self.correct = {t: torch.zeros((), dtype=torch.long, device=device) for t in num_classes}
        self.total_loss = torch.zeros((), device=device)
        self.confusion = (
            {t: torch.zeros(k * k, dtype=torch.long, device=device) for t, k in num_classes.items()}
            if confusion
            else None
        )

    def add(self, total: Tensor, losses: dict[str, Tensor], logits: dict[str, Tensor], labels: dict[str, Tensor]):
        n = next(iter(labels.values())).shape[0]
        self.count += n
        self.total_loss += total.detach() * n
        for t in self.num_classes:
            pred = logits[t].detach().argmax(1)  # (B,)
            self.loss[t] += losses[t].detach() * n
            self.correct[t] += (pred == labels[t]).sum()
            if self.confusion is not None:
                # Row = true class, column = predicted class, flattened to one bincount.
                k = self.num_classes[t]
                self.confusion[t] += torch.bincount(labels[t] * k + pred, minlength=k * k)

    def summary(self, prefix: str) -> dict[str, float]:
        """``{prefix.loss, prefix.<task>.loss, prefix.<task>.acc}`` as plain floats."""
        n = max(self.count, 1)
        out = {f"{prefix}.loss": float(self.total_loss) / n}
        for t in self.num_classes:
            out[f"{prefix}.{t}.loss"] = float(self.loss[t]) / n
            out[f"{prefix}.{t}.acc"] = float(self.correct[t]) / n
        return out

    def confusion_matrices(self) -> dict[str, list[list[int]]]:
        if self.confusion is None:
            return {}
        return {t: m.view(self.num_classes[t], -1).tolist() for t, m in self.confusion.items()}
