"""The ``mtan`` model: Liu, Johns & Davison (2019), "End-to-End Multi-Task Learning with Attention", CVPR.

Wiring, for T tasks and a shared trunk of S stages with outputs p_s (B, *shape_s): each task t has one attention
module per stage that computes a soft mask in (0, 1) of the same shape and selects from the shared features,

    a_t^s = sigmoid(g_t^s([p_s ; down_s(a_t^{s-1} * p_{s-1})]))        a_t^s * p_s   (B, *shape_s)

where [;] concatenates channels (maps) or features (flat), and down_s brings the task's previous attended features
to stage s's size: adaptive average pooling to (H_s, W_s) before a conv stage, global average pooling to (B, C)
before a dense stage that follows a map (so a mask costs O(C + F) inputs, not the flattened map). Stage 0's
mask reads p_0 alone. g_t^s is 1x1 conv -> BN -> ReLU -> 1x1 conv for maps (the paper's attention block) and
linear -> ReLU -> linear for flat stages. Task t's head reads its last attended features a_t^{S-1} * p_{S-1},
reduced to (B, F) as the trunk reduces its own output.

Where the paper's mask reads a block's intermediate features and masks the block's output, ours reads and masks
the stage output (our stages are opaque), and the paper's shared f blocks that carry a task's attended features
to the next resolution are replaced by parameter-free pooling (the mask's first 1x1 conv mixes the channels).

Shared parameters: the trunk (every task's loss reaches it through its masks). The attention modules of task t are
t's own, as are its heads (label reuse can share them, as in ``multitask``). A trunk with no stages has no masks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mtlab.config.base import InputShape, ModelExample, register_model_kind
from mtlab.data.tasks import Task
from mtlab.models.base import FASHION_TASKS, MultiTaskNet, Part
from mtlab.models.cascade import Cascade, HeadedModel
from mtlab.models.registry import create_trunk
from mtlab.models.staged import StageInfo
from mtlab.models.trunks.cnn import CnnTrunk

if TYPE_CHECKING:
    from mtlab.config.schema import Trunk


def attention_block(stage: StageInfo, previous: tuple[int, ...] | None) -> nn.Sequential:
    """The mask network g for ``stage``, reading the stage output and (if any) the previous attended features."""
    if stage.is_map:
        channels = stage.shape[0]
        extra = 0 if previous is None else previous[0]  # a map stage only follows maps (or the input)
        return nn.Sequential(
            nn.Conv2d(channels + extra, channels, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )
    width = stage.shape[0]
    extra = 0 if previous is None else previous[0]  # channels of a pooled map, or the previous width
    return nn.Sequential(nn.Linear(width + extra, width), nn.ReLU(), nn.Linear(width, width))


class TaskAttention(nn.Module):
    """One task's attention modules, ``blocks[s]`` for stage s."""

    def __init__(self, stages: list[StageInfo]):
        super().__init__()
        previous = [None, *(stage.shape for stage in stages[:-1])]
        self.blocks = nn.ModuleList(attention_block(stage, prev) for stage, prev in zip(stages, previous, strict=True))

    def forward(self, shared: list[Tensor]) -> Tensor:
        # shared: the trunk's stage outputs p_s (B, *shape_s) -> the last attended features (B, *shape_{S-1})
        attended: Tensor | None = None
        for block, p in zip(self.blocks, shared, strict=True):
            g_in = p if attended is None else torch.cat([p, _down(attended, p)], dim=1)
            attended = torch.sigmoid(block(g_in)) * p
        assert attended is not None
        return attended


def _down(attended: Tensor, p: Tensor) -> Tensor:
    """The previous attended features brought to ``p``'s size: pooled to (H, W) for a map, to (B, C') for a vector."""
    if p.dim() == 4:
        return F.adaptive_avg_pool2d(attended, p.shape[-2:])  # (B, C', H', W') -> (B, C', H, W)
    if attended.dim() == 4:
        return attended.mean(dim=(2, 3))  # (B, C', H', W') -> (B, C')
    return attended  # (B, F')


class MtanNet(MultiTaskNet):
    """A shared ``trunk``, ``attention[t]`` (:class:`TaskAttention`) and one head per task."""

    def __init__(self, config: MtanModel, tasks: list[Task], input_shape: InputShape):
        super().__init__([task.name for task in tasks])
        self.cascade = Cascade(config, tasks)
        self.trunk, features = create_trunk(config.trunk, input_shape)
        stages = self.trunk.stage_info
        self.attention = nn.ModuleDict({t: TaskAttention(stages) for t in self.task_names} if stages else {})
        self.heads = self.cascade.build_heads(config, tasks, features)

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Images (B, C, H, W) -> ``{task: the task's attended trunk features (B, F)}``."""
        if not self.attention:
            shared = self.trunk(x)  # (B, F)
            return {t: shared for t in self.task_names}
        stages = self.trunk.forward_stages(x)
        return {t: self.trunk.reduce(self.attention[t](stages)) for t in self.task_names}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.cascade.run(self.heads, self.features(x))

    def staged_trunks(self) -> dict[str, nn.Module]:
        """The shared trunk (the masks read its stages; they do not change what it computes)."""
        return {"shared": self.trunk}

    def parts(self) -> list[Part]:
        reach = self.cascade.reach
        parts = [Part("trunk", self.trunk, frozenset(self.task_names))]
        parts += [Part(f"attention.{t}", module, reach[t]) for t, module in self.attention.items()]
        parts += [Part(f"heads.{task}", head, reach[task]) for task, head in self.heads.items()]
        return parts


@register_model_kind
class MtanModel(HeadedModel):
    """Multi-Task Attention Network (Liu, Johns & Davison, 2019): a shared trunk, per-task soft attention masks."""

    kind: Literal["mtan"]
    trunk: Trunk = Field(description="The shared trunk whose stage outputs the attention masks select from.")

    def build(self, tasks: dict[str, Task], input_shape: InputShape) -> MtanNet:
        """:class:`MtanNet` with heads for ``tasks``, in that order."""
        return MtanNet(self, list(tasks.values()), input_shape)

    @classmethod
    def example(cls) -> ModelExample:
        model = {"kind": "mtan", "trunk": CnnTrunk.example(), "reuse": "item->group"}
        return ModelExample(model, FASHION_TASKS, (1, 12, 12))
