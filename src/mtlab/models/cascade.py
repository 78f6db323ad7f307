"""Task heads shared by every headed model kind, and label reuse (a cascade) between them.

Label reuse (see :class:`~mtlab.config.schema.Reuse`): for an edge source -> target, the source head's logits
(B, n_source) join the target head's features part-way, so heads run in topological order. Unless the edge has
``stop_gradient``, the target's loss then also trains the source head - and whatever feeds only the source head -
so those parameters are reached by two tasks' losses and count as *shared* parameters (:func:`loss_reach`). With
``stop_gradient`` the source logits are detached and the source's parameters stay its own task parameters, although
the target's output still depends on their values.
"""

from __future__ import annotations

from torch import Tensor, nn

from mtlab.config.schema import HeadedModel, Reuse
from mtlab.data.tasks import Task
from mtlab.models.heads import TaskHead


class Cascade:
    """The heads' wiring for ``tasks``: which edge feeds each target, the order heads run in, and loss reach."""

    def __init__(self, config: HeadedModel, tasks: list[Task]):
        self.task_names = [task.name for task in tasks]
        self.reuse: dict[str, Reuse] = {edge.target: edge for edge in config.reuse}
        self.order = topological_order(self.task_names, self.reuse)
        self.reach = loss_reach(self.task_names, self.reuse)

    def build_heads(self, config: HeadedModel, tasks: list[Task], features: int) -> nn.ModuleDict:
        """One :class:`TaskHead` per task reading ``features`` (B, F), widened where a reuse edge joins it."""
        num_classes = {task.name: task.outputs for task in tasks}  # output width per task
        heads = {}
        for task in self.task_names:
            head = config.heads.get(task, config.head)
            edge = self.reuse.get(task)
            side = num_classes[edge.source] if edge else 0
            join_at = edge.at if edge and edge.at is not None else len(head.widths) // 2
            heads[task] = TaskHead(features, head, num_classes[task], side_features=side, join_at=join_at)
        return nn.ModuleDict(heads)

    def run(self, heads: nn.ModuleDict, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{task: features (B, F)}`` -> ``{task: logits (B, n_task)}`` in ``task_names`` order."""
        logits: dict[str, Tensor] = {}
        for task in self.order:
            edge = self.reuse.get(task)
            side = None
            if edge is not None:
                side = logits[edge.source]  # (B, n_source)
                if edge.stop_gradient:
                    side = side.detach()
            logits[task] = heads[task](features[task], side)  # (B, n_task)
        return {task: logits[task] for task in self.task_names}


def topological_order(tasks: list[str], reuse: dict[str, Reuse]) -> list[str]:
    """Tasks ordered so every reuse source comes before its targets (stable otherwise)."""

    def depth(task: str, seen: frozenset[str] = frozenset()) -> int:
        if task in seen:
            raise ValueError(f"reuse edges form a cycle through {task!r}")
        edge = reuse.get(task)
        return 0 if edge is None else 1 + depth(edge.source, seen | {task})

    return sorted(tasks, key=depth)


def loss_reach(tasks: list[str], reuse: dict[str, Reuse]) -> dict[str, frozenset[str]]:
    """For each task, the tasks whose losses reach its head: itself, and (transitively) every target that reuses
    its logits through an edge without ``stop_gradient``."""
    consumers: dict[str, list[str]] = {task: [] for task in tasks}
    for target, edge in reuse.items():
        if not edge.stop_gradient:
            consumers[edge.source].append(target)

    def reach(task: str) -> frozenset[str]:
        return frozenset({task}).union(*(reach(target) for target in consumers[task]))

    return {task: reach(task) for task in tasks}
