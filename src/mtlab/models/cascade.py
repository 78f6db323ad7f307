"""Task heads shared by every headed model kind, and label reuse (a cascade) between them.

Label reuse (see :class:`Reuse`): for an edge source -> target, the source head's logits
(B, n_source) join the target head's features part-way, so heads run in topological order. Unless the edge has
``stop_gradient``, the target's loss then also trains the source head - and whatever feeds only the source head -
so those parameters are reached by two tasks' losses and count as *shared* parameters (:func:`loss_reach`). With
``stop_gradient`` the source logits are detached and the source's parameters stay its own task parameters, although
the target's output still depends on their values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from mtlab.config.base import ModelKind, Strict, dense_tasks, unknown_task, unknown_task_key
from mtlab.config.base import at as _at
from mtlab.data.tasks import Task
from mtlab.models.heads import Head, TaskHead

if TYPE_CHECKING:
    from mtlab.config.schema import RunConfig


class Reuse(Strict):
    """Label reuse (a cascade): the source head's logits are concatenated into the target head's features.

    ``at`` counts hidden layers of the target head: the logits join the features after that many layers (``None``:
    after the middle one, ``len(widths) // 2``; the CIFAR-100 reference concatenates after 1024 -> 512, i.e. 2).
    Gradients flow from the target's loss into the source head unless ``stop_gradient``.
    """

    source: str
    target: str
    at: int | None = Field(None, ge=0)
    stop_gradient: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_arrow(cls, value: object) -> object:
        # "coarse->fine" is shorthand for {source: coarse, target: fine}.
        if isinstance(value, str):
            source, sep, target = value.partition("->")
            if not sep or not source.strip() or not target.strip():
                raise ValueError(f"reuse edge {value!r} must look like 'source->target'")
            return {"source": source.strip(), "target": target.strip()}
        return value

    @model_validator(mode="after")
    def _not_self(self) -> Reuse:
        if self.source == self.target:
            raise ValueError(f"a task cannot reuse its own labels ({self.source}->{self.target})")
        return self


class HeadedModel(ModelKind):
    """A kind whose tasks each read features through a :class:`Head`, optionally cascaded by label reuse."""

    head: Head = Field(default_factory=Head, description="Head used for every task without its own entry in heads.")
    heads: dict[str, Head] = Field(default_factory=dict, description="Per-task head overrides.")
    reuse: list[Reuse] = Field(default_factory=list)

    @field_validator("reuse", mode="before")
    @classmethod
    def _single_edge(cls, value: object) -> object:
        # A grid axis may give one edge ("coarse->fine") or "none" instead of a list.
        if value is None or value == "none":
            return []
        if isinstance(value, (str, dict)):
            return [value]
        return value

    def check_run(self, run: RunConfig) -> None:
        per_pixel = dense_tasks(run)
        if per_pixel:
            raise _at(
                "model.kind",
                f"tasks {per_pixel} predict a map per pixel; a {self.sharing_label()!r} model predicts one vector per "
                "example - use kind segnet, segnet_mtan or deeplab",
            )
        tasks = run.task_names
        for task in self.heads:
            if task not in tasks:
                raise _at(f"model.heads.{task}", unknown_task_key(f"model.heads.{task}", tasks))
        targets: dict[str, str] = {}
        for i, edge in enumerate(self.reuse):
            for role in ("source", "target"):
                if getattr(edge, role) not in tasks:
                    name = getattr(edge, role)
                    raise _at(f"model.reuse[{i}].{role}", unknown_task(name, tasks, f"tasks are {tasks}"))
            if edge.target in targets:
                raise _at(f"model.reuse[{i}].target", f"{edge.target!r} already reuses {targets[edge.target]!r}")
            targets[edge.target] = edge.source
            depth = len(self.heads.get(edge.target, self.head).widths)
            if edge.at is not None and edge.at > depth:
                raise _at(f"model.reuse[{i}].at", f"{edge.at} > the {depth} hidden layers of head {edge.target!r}")
        # A cycle (a->b, b->a) has no order in which heads can be computed.
        for start in targets:
            seen, node = {start}, start
            while node in targets:
                node = targets[node]
                if node in seen:
                    raise _at("model.reuse", f"edges form a cycle through {node!r}")
                seen.add(node)



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
