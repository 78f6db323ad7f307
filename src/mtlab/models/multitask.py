"""The ``multitask`` model: a trunk (shared, or one per task) and one head per task, optionally cascaded.

Label reuse (a cascade, see :class:`~mtlab.config.schema.Reuse`): for an edge source -> target, the source head's
logits (B, n_source) join the target head's features part-way, so heads run in topological order. Unless the edge
has ``stop_gradient``, the target's loss then also trains the source head (and the source's own trunk when trunks
are independent): those parameters are reached by two tasks' losses and so count as *shared* parameters. With
``stop_gradient`` the source logits are detached and the source's parameters stay its own task parameters, although
the target's output still depends on their values.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mtlab.config.schema import MultiTaskModel, Reuse, RunConfig
from mtlab.data.tasks import Task
from mtlab.models.base import MultiTaskNet, Part, pick_tasks
from mtlab.models.heads import TaskHead
from mtlab.models.registry import InputShape, create_trunk, register_model

SHARED = "shared"
"""Key of the single trunk when trunks are shared (independent trunks are keyed by task)."""


class MultiHeadNet(MultiTaskNet):
    """Trunk(s) and one :class:`TaskHead` per task.

    ``trunks`` holds one trunk under ``"shared"`` (``sharing: shared``) or one per task, keyed by task
    (``sharing: independent``, each built and initialised separately); ``heads`` holds one head per task.
    """

    def __init__(self, config: MultiTaskModel, tasks: list[Task], input_shape: InputShape):
        super().__init__([task.name for task in tasks])
        num_classes = {task.name: task.num_classes for task in tasks}
        self.reuse: dict[str, Reuse] = {edge.target: edge for edge in config.reuse}
        keys = [SHARED] if config.sharing == "shared" else self.task_names
        trunks = {}
        for key in keys:
            trunks[key], features = create_trunk(config.trunk, input_shape)
        self.trunks = nn.ModuleDict(trunks)
        heads = {}
        for task in self.task_names:
            head = config.heads.get(task, config.head)
            edge = self.reuse.get(task)
            side = num_classes[edge.source] if edge else 0
            join_at = edge.at if edge and edge.at is not None else len(head.widths) // 2
            heads[task] = TaskHead(features, head, num_classes[task], side_features=side, join_at=join_at)
        self.heads = nn.ModuleDict(heads)
        self.order = _topological_order(self.task_names, self.reuse)
        self.reach = _loss_reach(self.task_names, self.reuse)

    def trunk_of(self, task: str) -> str:
        """Key in ``trunks`` of the trunk ``task``'s head reads."""
        return SHARED if SHARED in self.trunks else task

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Images (B, C, H, W) -> ``{trunk key: features (B, F)}``."""
        return {key: trunk(x) for key, trunk in self.trunks.items()}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.forward_heads(self.features(x))

    def representation(self) -> tuple[str, str] | None:
        return (SHARED, f"trunks.{SHARED}") if SHARED in self.trunks else None

    def forward_heads(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{trunk key: (B, F)}`` -> ``{task: logits (B, n_task)}``, heads in cascade order."""
        logits: dict[str, Tensor] = {}
        for task in self.order:
            edge = self.reuse.get(task)
            side = None
            if edge is not None:
                side = logits[edge.source]  # (B, n_source)
                if edge.stop_gradient:
                    side = side.detach()
            logits[task] = self.heads[task](features[self.trunk_of(task)], side)  # (B, n_task)
        return {task: logits[task] for task in self.task_names}

    def trunk_modules(self) -> dict[str, nn.Module]:
        return dict(self.trunks.items())

    def parts(self) -> list[Part]:
        everyone = frozenset(self.task_names)
        parts = [
            Part(f"trunks.{key}", trunk, everyone if key == SHARED else self.reach[key])
            for key, trunk in self.trunks.items()
        ]
        parts += [Part(f"heads.{task}", head, self.reach[task]) for task, head in self.heads.items()]
        return parts


def _topological_order(tasks: list[str], reuse: dict[str, Reuse]) -> list[str]:
    """Tasks ordered so every reuse source comes before its targets (stable otherwise)."""

    def depth(task: str, seen: frozenset[str] = frozenset()) -> int:
        if task in seen:
            raise ValueError(f"reuse edges form a cycle through {task!r}")
        edge = reuse.get(task)
        return 0 if edge is None else 1 + depth(edge.source, seen | {task})

    return sorted(tasks, key=depth)


def _loss_reach(tasks: list[str], reuse: dict[str, Reuse]) -> dict[str, frozenset[str]]:
    """For each task, the tasks whose losses reach its head: itself, and (transitively) every target that reuses
    its logits through an edge without ``stop_gradient``."""
    consumers: dict[str, list[str]] = {task: [] for task in tasks}
    for target, edge in reuse.items():
        if not edge.stop_gradient:
            consumers[edge.source].append(target)

    def reach(task: str) -> frozenset[str]:
        return frozenset({task}).union(*(reach(target) for target in consumers[task]))

    return {task: reach(task) for task in tasks}


@register_model("multitask")
def build_multitask(config: RunConfig, tasks: Mapping[str, Task], input_shape: InputShape) -> MultiHeadNet:
    """:class:`MultiHeadNet` for ``config.model`` with heads for ``config.task_names``, in that order."""
    assert isinstance(config.model, MultiTaskModel)
    return MultiHeadNet(config.model, pick_tasks(tasks, config.task_names), input_shape)
