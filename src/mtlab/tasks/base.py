"""Typed tasks: what a task's outputs are, how they are scored, and which way is better.

A :class:`Task` is a dataset's task (its name, its type's name and what the type needs: class, label or output
names; a regression loss). Its :class:`TaskType` - registered by name in :data:`TASK_TYPES` - owns everything that
depends on the type and that the rest of mtlab asks instead of assuming accuracy:

* ``outputs(task)``: the width of the network's output for the task (classes, 1, labels, regression outputs);
* ``metrics``: every metric the type reports, each with its direction (``"max"``: higher is better, ``"min"``);
  ``loss`` is always reported too (direction ``"min"``); ``primary`` names the one tables and rankings lead with;
* ``bind(task, train_targets, device)`` -> an :class:`Objective`: the task of one run of K replicas, holding what is
  fitted on each replica's training split (regression: the target mean and standard deviation, so the network is
  trained on standardised targets while every metric is reported in the target's own units).

Targets. Each task's targets are one tensor per split, (N,) or (N, L), in the dtype the type declares; a missing label
is ``-1`` for integer targets and ``NaN`` for float ones (:meth:`TaskType.labelled`). A ``dense`` type (segmentation,
depth, normals) predicts a map per example: outputs (B, O, H, W), targets (N, H, W) or (N, O, H, W), missing per
pixel. A missing label adds nothing to
that task's loss or metrics; a batch with no label of a task gives that task a loss of 0 with zero gradient.

Metrics are accumulated over a whole split for K replicas on the device (no host sync per batch) by the
:class:`MetricTotals` an objective makes, and read once at the end of the pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from mtlab.registry import Registry

Direction = Literal["max", "min"]
TargetFormat = Literal["classes", "two_values", "zero_one", "numbers"]


@dataclass(frozen=True)
class Task:
    """A task of a dataset.

    ``class_names`` names the values of the task's output, whatever the type: the classes of a ``multiclass`` task,
    ``(negative, positive)`` of a ``binary`` one, the labels of a ``multilabel`` one, the outputs of a
    ``regression`` one. ``loss`` is the regression loss (``mse``, ``l1``, ``huber``); other types ignore it.
    """

    name: str
    class_names: tuple[str, ...] = ()
    type: str = "multiclass"
    loss: str = "mse"

    @property
    def task_type(self) -> TaskType:
        return TASK_TYPES.get(self.type)

    @property
    def outputs(self) -> int:
        """Width of the network's output for this task."""
        return self.task_type.outputs(self)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> dict[str, object]:
        """What a run directory and a results store record of the task (enough to report it without its dataset)."""
        kind = self.task_type
        return {
            "type": self.type,
            "names": list(self.class_names),
            "loss": self.loss,
            "primary": kind.primary,
            "metrics": {"loss": "min", **kind.metrics},
        }


class MetricTotals(ABC):
    """Running sums over the batches of one pass for K replicas, kept on the device."""

    @abstractmethod
    def add(self, outputs: Tensor, targets: Tensor, loss: Tensor) -> None:
        """``outputs`` (K, B, O) detached network outputs; ``targets`` (K, B[, L]); ``loss`` (K,) the batch's mean
        task loss over its labelled examples."""

    @abstractmethod
    def summary(self) -> dict[str, list[float]]:
        """``{metric: [value of replica k]}`` for ``loss`` and every metric of the type (NaN where undefined, e.g.
        a task with no labelled example in the split)."""

    def confusion(self, k: int) -> list[list[int]] | None:
        """Replica ``k``'s confusion matrix (rows: true class), for types that have one and when asked for."""
        return None


class Objective(ABC):
    """One task of one run of K replicas: its loss and its metric totals, with the training split's statistics."""

    def __init__(self, task: Task, replicas: int, device: torch.device):
        self.task = task
        self.replicas = replicas
        self.device = device

    @abstractmethod
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """``outputs`` (K, B, O), ``targets`` (K, B[, L]) -> (K,) mean loss of each replica over its labelled
        examples (0, with zero gradient, where a replica's batch has none)."""

    @abstractmethod
    def totals(self, confusion: bool = False) -> MetricTotals:
        """Fresh totals for one pass (``confusion``: also a confusion matrix, for types that have one)."""


class TaskType(ABC):
    """A kind of task. Subclasses set the class attributes and implement :meth:`outputs` and :meth:`bind`."""

    name: ClassVar[str]
    metrics: ClassVar[dict[str, Direction]]
    """Every metric reported besides ``loss``, with its direction."""
    primary: ClassVar[str]
    """The metric tables, rankings, summaries and Δm use for the task."""
    has_confusion: ClassVar[bool] = False
    dense: ClassVar[bool] = False
    """Per-pixel task: outputs are maps (B, O, H, W) at the input's height and width, targets (N, H, W) of class
    indices or (N, O, H, W) of values - not vectors (B, O) and targets (N[, L])."""
    target_dtype: ClassVar[torch.dtype]
    """dtype of the stored targets (an integer dtype: missing = -1; a float dtype: missing = NaN)."""
    targets_from: ClassVar[TargetFormat | None] = None
    """How a user's table cells or array values become this type's targets (:mod:`mtlab.data.table`,
    :mod:`mtlab.data.arrays`): ``classes`` - one class per example, (N,) indices of the values the task's classes
    name; ``two_values`` - (N,) 0/1 from a column of two values; ``zero_one`` - (N, L) 0/1, one column per label;
    ``numbers`` - (N,) or (N, O) floats, one column per output. None: ``classes`` for an integer
    :attr:`target_dtype`, else ``numbers`` (see :meth:`target_format`)."""
    losses: ClassVar[tuple[str, ...] | None] = None
    """The losses a task of this type may choose (``Task.loss``; the first is the default); ``()``: the type has
    its own loss and a dataset config that names one is an error; None: not checked (a plug-in's choice)."""
    stratifies: ClassVar[bool] = False
    """Whether fully labelled (N,) targets of this type are classes a stratified draw can balance
    (:meth:`strata`)."""

    @abstractmethod
    def outputs(self, task: Task) -> int:
        """Width of the network output."""

    @abstractmethod
    def bind(self, task: Task, train_targets: list[Tensor], device: torch.device) -> Objective:
        """The objective of K replicas; ``train_targets[k]`` is replica k's training-split targets (N_k[, L])."""

    def target_format(self) -> TargetFormat:
        """How the type's targets are read from a table or arrays (:attr:`targets_from`, or from the dtype)."""
        if self.targets_from is not None:
            return self.targets_from
        return "numbers" if self.target_dtype.is_floating_point else "classes"

    @property
    def one_column(self) -> bool:
        """Whether a task of this type reads exactly one column of a table (one value per example)."""
        return self.target_format() in ("classes", "two_values")

    @property
    def class_indices(self) -> bool:
        """Whether the targets are one class index per example, (N,) integers: what per-class pictures read."""
        return self.target_format() == "classes" and not self.dense

    @property
    def missing_label(self) -> float:
        """The value a missing label is stored as: -1 in integer targets, NaN in float ones."""
        return float("nan") if self.target_dtype.is_floating_point else -1

    def strata(self, targets: Tensor) -> Tensor | None:
        """Class indices (N,) to stratify a draw of examples on, or None: the targets themselves when the type
        :attr:`stratifies` and every example of ``targets`` (N,) is labelled."""
        if self.stratifies and targets.ndim == 1 and bool(self.labelled(targets).all()):
            return targets.long()
        return None

    def labelled(self, targets: Tensor) -> Tensor:
        """Bool mask, same shape as ``targets``: where a label is present."""
        if targets.is_floating_point():
            return ~torch.isnan(targets)
        return targets >= 0

    def direction(self, metric: str) -> Direction:
        if metric == "loss":
            return "min"
        try:
            return self.metrics[metric]
        except KeyError:
            raise KeyError(f"{self.name} tasks have no metric {metric!r}; they report {self.metric_names()}") from None

    def metric_names(self) -> list[str]:
        return ["loss", *self.metrics]

    def check_targets(self, task: Task, targets: Tensor) -> str | None:
        """A problem with ``targets`` (N[, L]) for ``task`` as one phrase (the caller adds the file and column), or
        None. The default checks shape and that float targets are finite where present."""
        if targets.is_floating_point() and torch.isinf(targets).any():
            return "holds infinite values"
        return None


TASK_TYPES: Registry[TaskType] = Registry("task type", entry_point_group="mtlab.tasks")
"""Task types by name; an outside package adds one through the ``mtlab.tasks`` entry point group."""


def register_task_type(cls: type[TaskType]) -> type[TaskType]:
    """Class decorator: register a :class:`TaskType` (instantiated once) under its ``name``."""
    TASK_TYPES.register(cls.name)(cls())
    return cls


def masked_mean(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean of ``values`` (K, B, ...) over the entries where ``mask`` is true, per replica, and the count (K,).

    A replica with no entry gets 0 (with zero gradient): ``sum / max(count, 1)``."""
    k = values.shape[0]
    mask = mask.to(values.dtype)
    # where(), not multiplication: a NaN at a masked entry (e.g. a loss against a NaN target) must not leak.
    total = torch.where(mask > 0, values, torch.zeros_like(values)).reshape(k, -1).sum(1)
    count = mask.reshape(k, -1).sum(1)
    return total / count.clamp_min(1), count
