"""The ``multitask`` model - hard parameter sharing: a trunk (shared, or one per task) and one head per task.

Heads may be cascaded by label reuse (:mod:`mtlab.models.cascade`). Shared parameters: the shared trunk, and with
independent trunks whatever a reuse edge without ``stop_gradient`` lets a second task's loss reach (the source's
head and its own trunk); everything else belongs to its task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from torch import Tensor, nn

from mtlab.config.base import InputShape, ModelExample, register_model_kind
from mtlab.data.tasks import Task
from mtlab.models.base import FASHION_TASKS, MultiTaskNet, Part
from mtlab.models.cascade import Cascade, HeadedModel
from mtlab.models.registry import create_trunk
from mtlab.models.trunks.cnn import CnnTrunk

if TYPE_CHECKING:
    from mtlab.config.schema import Trunk

SHARED = "shared"
"""Key of the single trunk when trunks are shared (independent trunks are keyed by task)."""


class MultiHeadNet(MultiTaskNet):
    """Trunk(s) and one :class:`~mtlab.models.heads.TaskHead` per task.

    ``trunks`` holds one trunk under ``"shared"`` (``sharing: shared``) or one per task, keyed by task
    (``sharing: independent``, each built and initialised separately); ``heads`` holds one head per task.
    """

    def __init__(self, config: MultiTaskModel, tasks: list[Task], input_shape: InputShape):
        super().__init__([task.name for task in tasks])
        self.cascade = Cascade(config, tasks)
        keys = [SHARED] if config.sharing == "shared" else self.task_names
        trunks = {}
        for key in keys:
            trunks[key], features = create_trunk(config.trunk, input_shape)
        self.trunks = nn.ModuleDict(trunks)
        self.heads = self.cascade.build_heads(config, tasks, features)

    @property
    def order(self) -> list[str]:
        return self.cascade.order

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
        return self.cascade.run(self.heads, {task: features[self.trunk_of(task)] for task in self.task_names})

    def staged_trunks(self) -> dict[str, nn.Module]:
        return dict(self.trunks.items())

    def parts(self) -> list[Part]:
        everyone, reach = frozenset(self.task_names), self.cascade.reach
        parts = [Part(f"trunks.{k}", trunk, everyone if k == SHARED else reach[k]) for k, trunk in self.trunks.items()]
        parts += [Part(f"heads.{task}", head, reach[task]) for task, head in self.heads.items()]
        return parts


@register_model_kind
class MultiTaskModel(HeadedModel):
    """Hard parameter sharing: a trunk (shared by all tasks, or one copy per task) and one head per task."""

    kind: Literal["multitask"] = "multitask"
    trunk: Trunk
    sharing: Literal["shared", "independent"] = "shared"

    def sharing_label(self) -> str:
        return self.sharing

    def build(self, tasks: dict[str, Task], input_shape: InputShape) -> MultiHeadNet:
        """:class:`MultiHeadNet` with heads for ``tasks``, in that order."""
        return MultiHeadNet(self, list(tasks.values()), input_shape)

    @classmethod
    def example(cls) -> ModelExample:
        model = {"kind": "multitask", "trunk": CnnTrunk.example(), "reuse": "group->item"}
        return ModelExample(model, FASHION_TASKS, (1, 12, 12))
