"""``binary``: one yes/no label per example - binary cross-entropy on one logit; accuracy, F1 and AUROC.

A binary task is the one-label case of a ``multilabel`` task, so this module also holds what the two share: the
sigmoid objective (:class:`SigmoidObjective`), the running totals (:class:`SigmoidTotals`) and the exact AUROC of
kept scores (:func:`auroc`). :mod:`mtlab.tasks.multilabel` reuses them with L labels.

Metrics of one label, over the labelled examples of the whole split (prediction: positive where the logit is > 0):

* ``acc`` = (TP + TN) / n;
* ``f1`` = 2 TP / (2 TP + FP + FN), the F1 of the positive class. When the split has no positive example and none is
  predicted (2 TP + FP + FN = 0) it is 0: scikit-learn's ``f1_score`` with its default ``zero_division="warn"``
  returns 0.0 there (and warns), checked against scikit-learn 1.9;
* ``auroc`` = the area under the ROC curve of the logits, computed exactly as the Mann-Whitney statistic with
  midranks for ties, ``(sum of the positives' ranks - P (P + 1) / 2) / (P N)``, which equals scikit-learn's
  trapezoid ``roc_auc_score`` (a tie between a positive and a negative counts 1/2). NaN when the split has only one
  class (scikit-learn raises there).

``primary`` is ``acc``: the simplest to read, and what the multi-task papers report; ``auroc`` is there for
imbalanced labels.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlab.tasks.base import Direction, MetricTotals, Objective, Task, TaskType, masked_mean, register_task_type


@register_task_type
class Binary(TaskType):
    """Targets (N,) float32 in {0, 1} (NaN: missing); outputs (B, 1), the logit of the positive class.

    ``task.class_names`` is ``(negative, positive)`` (only used to name them)."""

    name = "binary"
    metrics: ClassVar[dict[str, Direction]] = {"acc": "max", "f1": "max", "auroc": "max"}
    primary = "acc"
    target_dtype = torch.float32
    targets_from = "two_values"
    losses = ()
    stratifies = True

    def outputs(self, task: Task) -> int:
        return 1

    def bind(self, task: Task, train_targets: list[Tensor], device: torch.device) -> Objective:
        return SigmoidObjective(task, len(train_targets), device, labels=1)

    def check_targets(self, task: Task, targets: Tensor) -> str | None:
        if not targets.is_floating_point() or targets.ndim != 1:
            return f"must be one 0/1 float per example, got {targets.dtype} of shape {tuple(targets.shape)}"
        return zero_one_problem(targets)


def zero_one_problem(targets: Tensor) -> str | None:
    """A phrase if ``targets`` holds a value other than 0, 1 or NaN (missing)."""
    bad = ~(torch.isnan(targets) | (targets == 0) | (targets == 1))
    if bad.any():
        return f"holds {float(targets[bad][0])!r} where only 0, 1 or NaN (missing) are allowed"
    return None


def _cells(targets: Tensor) -> Tensor:
    """Targets (K, B) of a one-output task -> (K, B, 1); (K, B, L) unchanged."""
    return targets.unsqueeze(-1) if targets.ndim == 2 else targets


class SigmoidObjective(Objective):
    """Independent sigmoid labels: outputs (K, B, L) logits, targets (K, B) (L = 1) or (K, B, L) in {0, 1, NaN}.

    The loss is the binary cross-entropy with logits averaged over the labelled cells of each replica's batch."""

    def __init__(self, task: Task, replicas: int, device: torch.device, labels: int):
        super().__init__(task, replicas, device)
        self.labels = labels

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        targets = _cells(targets)  # (K, B, L)
        mask = ~torch.isnan(targets)  # (K, B, L)
        # A NaN target would reach the gradient through BCE's backward (0 * NaN), whatever masks the loss after it.
        filled = torch.where(mask, targets, torch.zeros_like(targets)).to(outputs.dtype)
        per_cell = F.binary_cross_entropy_with_logits(outputs, filled, reduction="none")  # (K, B, L)
        return masked_mean(per_cell, mask)[0]

    def totals(self, confusion: bool = False) -> MetricTotals:
        return SigmoidTotals(self.labels, self.replicas, self.device)


class SigmoidTotals(MetricTotals):
    """Per replica and label: the counts TP, FP, FN, TN (for ``acc`` and ``f1``), and the pass's logits and labels
    kept on the device (for the exact ``auroc``). Each label's metrics use its labelled cells only; the reported
    value is the mean over the labels that have one (``acc``, ``f1``: a labelled cell; ``auroc``: both classes),
    NaN if none - for one label (``binary``) simply that label's value."""

    def __init__(self, labels: int, replicas: int, device: torch.device):
        self.labels = labels
        zeros = torch.zeros(replicas, labels, dtype=torch.long, device=device)
        self.tp, self.fp, self.fn, self.tn = zeros, zeros.clone(), zeros.clone(), zeros.clone()  # (K, L) each
        self.loss_sum = torch.zeros(replicas, dtype=torch.float64, device=device)
        self.count = torch.zeros(replicas, dtype=torch.long, device=device)  # labelled cells
        self.scores: list[Tensor] = []  # (K, B, L) float32 logits per batch
        self.states: list[Tensor] = []  # (K, B, L) int8 per batch: 1 positive, 0 negative, -1 missing

    def add(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        targets = _cells(targets)  # (K, B, L)
        outputs = outputs.detach()  # (K, B, L)
        positive, negative = targets == 1, targets == 0  # NaN (missing) is neither
        labelled = (positive | negative).sum((1, 2))  # (K,)
        self.count += labelled
        self.loss_sum += loss.detach().double() * labelled
        predicted = outputs > 0
        self.tp += (predicted & positive).sum(1)
        self.fp += (predicted & negative).sum(1)
        self.fn += (~predicted & positive).sum(1)
        self.tn += (~predicted & negative).sum(1)
        self.scores.append(outputs.to(torch.float32, copy=True))
        state = torch.full(targets.shape, -1, dtype=torch.int8, device=targets.device)
        self.states.append(state.masked_fill(negative, 0).masked_fill(positive, 1))

    def per_label(self) -> dict[str, Tensor]:
        """``{"acc" | "f1" | "auroc": (K, L) float64}``, NaN where a label's metric is undefined."""
        tp, fp, fn, tn = (c.double() for c in (self.tp, self.fp, self.fn, self.tn))
        n = tp + fp + fn + tn
        nan = torch.full_like(n, float("nan"))
        acc = torch.where(n > 0, (tp + tn) / n.clamp_min(1), nan)
        # No positive in the split and none predicted: 0, as scikit-learn's default zero_division gives.
        f1 = torch.where(n > 0, 2 * tp / (2 * tp + fp + fn).clamp_min(1), nan)
        if self.scores:
            k, labels = n.shape
            # (K, N, L) -> (K * L, N): one row per replica and label.
            scores = torch.cat(self.scores, 1).permute(0, 2, 1).reshape(k * labels, -1)
            states = torch.cat(self.states, 1).permute(0, 2, 1).reshape(k * labels, -1)
            area = auroc(scores, states).view(k, labels)
        else:
            area = nan
        return {"acc": acc, "f1": f1, "auroc": area}

    def summary(self) -> dict[str, list[float]]:
        n = self.count.double()
        loss = torch.where(n > 0, self.loss_sum / n.clamp_min(1), torch.full_like(n, float("nan")))
        return {"loss": loss.tolist(), **{name: torch.nanmean(v, 1).tolist() for name, v in self.per_label().items()}}


def auroc(scores: Tensor, states: Tensor) -> Tensor:
    """Exact AUROC of each row: ``scores`` (R, N) float, ``states`` (R, N) int8 (1 positive, 0 negative, -1 missing)
    -> (R,) float64; NaN where a row's labelled entries hold one class only, or a NaN score.

    Mann-Whitney: rank the labelled scores (1-based, ties get the mean of their ranks), then
    ``AUROC = (sum of the positives' ranks - P (P + 1) / 2) / (P N)`` with P positives and N negatives - the
    probability that a positive scores above a negative, ties counting 1/2, which is exactly the trapezoid area under
    the ROC curve that scikit-learn's ``roc_auc_score`` computes."""
    r, n = scores.shape
    labelled = states >= 0  # (R, N)
    # Labelled entries first in ascending score, missing ones after: a stable sort by score, then by missing-ness.
    order = torch.sort(scores, dim=1, stable=True).indices  # (R, N)
    order = order.gather(1, torch.sort((~labelled).gather(1, order).to(torch.uint8), dim=1, stable=True).indices)
    kept = labelled.gather(1, order)  # (R, N), a prefix of each row
    positive = states.gather(1, order) == 1  # (R, N)
    # NaN at missing entries: NaN equals nothing, so they tie with no labelled score.
    s = torch.where(kept, scores.gather(1, order).double(), torch.full((r, n), float("nan"), device=scores.device))
    index = torch.arange(n, device=scores.device).expand(r, n)  # (R, N)
    starts = torch.ones_like(kept)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]  # a position opens a tie group unless it equals its left neighbour
    ends = torch.ones_like(kept)
    ends[:, :-1] = s[:, :-1] != s[:, 1:]
    first = torch.where(starts, index, 0).cummax(1).values  # (R, N) first position of each one's group
    last = torch.where(ends, index, n).flip(1).cummin(1).values.flip(1)  # (R, N) last position
    rank = (first + last).double() / 2 + 1  # (R, N) midrank, 1-based
    p = positive.sum(1).double()  # (R,)
    q = (kept & ~positive).sum(1).double()  # (R,)
    u = torch.where(positive, rank, torch.zeros_like(rank)).sum(1) - p * (p + 1) / 2
    area = u / (p * q).clamp_min(1)
    undefined = (p == 0) | (q == 0) | (torch.isnan(scores) & labelled).any(1)
    return torch.where(undefined, torch.full_like(area, float("nan")), area)
