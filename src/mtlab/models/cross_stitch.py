"""The ``cross_stitch`` model: Misra, Shrivastava, Gupta & Hebert (2016), "Cross-stitch Networks for Multi-task
Learning", CVPR.

Wiring, for T tasks and a trunk of S stages: one trunk *column* per task (each built and initialised separately,
like independent trunks), and after every stage s a learned cross-stitch unit alpha_s (T, T) that replaces each
column's output by a linear combination of all columns' outputs at that stage:

    h_t^s = sum_u alpha_s[t, u] * column_u.stage_s(h_u^{s-1}),        h_u^{-1} = x   (B, C, H, W)

with every h (B, *shape_s) - a feature map after a conv stage, flat features after a dense one. Column t's last
mixed output, reduced to (B, F), feeds task t's head (label reuse between heads as in ``multitask``). The paper
learns one alpha per pair of tasks and layer (optionally per channel); we learn one T x T matrix per stage.

Initialisation (the paper's (alpha_S, alpha_D) = (0.9, 0.1) for two tasks, generalised so that rows sum to 1):
alpha[t, t] = ``self_weight`` (default 0.9) and alpha[t, u] = (1 - self_weight) / (T - 1) for u != t; one task:
alpha = [[1]].

Shared parameters: every column and the stitches - through alpha every task's loss reaches every column from the
first stage on. Only the heads (and what label reuse leaves them) are task parameters. A trunk with no stages
(an MLP of no hidden layers) has no stitches: its columns are then independent trunks, each its task's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mtlab.config.base import InputShape, ModelExample, register_model_kind
from mtlab.data.tasks import Task
from mtlab.models.base import FASHION_TASKS, MultiTaskNet, Part
from mtlab.models.cascade import Cascade, HeadedModel
from mtlab.models.registry import create_trunk
from mtlab.models.staged import StagedTrunk, TrunkInNetwork
from mtlab.models.trunks.cnn import CnnTrunk

if TYPE_CHECKING:
    from mtlab.config.schema import Trunk


def stitch_init(tasks: int, stages: int, self_weight: float) -> Tensor:
    """(S, T, T) cross-stitch matrices: ``self_weight`` on the diagonal, the rest of each row spread evenly."""
    if tasks == 1:
        return torch.ones(stages, 1, 1)
    other = (1.0 - self_weight) / (tasks - 1)
    alpha = torch.full((tasks, tasks), other)
    alpha.fill_diagonal_(self_weight)
    return alpha.expand(stages, tasks, tasks).clone()


class CrossStitchUnits(nn.Module):
    """``alpha`` (S, T, T): one cross-stitch unit per stage."""

    def __init__(self, tasks: int, stages: int, self_weight: float):
        super().__init__()
        self.alpha = nn.Parameter(stitch_init(tasks, stages, self_weight))

    def __len__(self) -> int:
        return self.alpha.shape[0]

    def forward(self, s: int, outputs: Tensor) -> Tensor:
        # outputs (T, B, *shape_s): stage s of every column -> (T, B, *shape_s), row t = sum_u alpha_s[t, u] * row u
        return torch.einsum("tu,u...->t...", self.alpha[s], outputs)


class CrossStitchNet(MultiTaskNet):
    """``columns`` (one :class:`StagedTrunk` per task), ``stitch`` (:class:`CrossStitchUnits`), one head per task."""

    def __init__(self, config: CrossStitchModel, tasks: list[Task], input_shape: InputShape):
        super().__init__([task.name for task in tasks])
        self.cascade = Cascade(config, tasks)
        columns = {}
        for task in self.task_names:
            columns[task], features = create_trunk(config.trunk, input_shape)
        self.columns = nn.ModuleDict(columns)
        stages = len(self.columns[self.task_names[0]].stage_info)
        self.stitch = CrossStitchUnits(len(self.task_names), stages, config.self_weight)
        self.heads = self.cascade.build_heads(config, tasks, features)

    def stitched_stages(self, x: Tensor) -> list[list[Tensor]]:
        """Per stage s, the T mixed column outputs h_t^s (B, *shape_s), in task order."""
        columns: list[StagedTrunk] = [self.columns[t] for t in self.task_names]
        h = [x] * len(columns)
        outputs = []
        for s in range(len(self.stitch)):
            stage = torch.stack([column.run_stage(s, h_t) for column, h_t in zip(columns, h, strict=True)])
            h = list(self.stitch(s, stage).unbind(0))  # T x (B, *shape_s)
            outputs.append(h)
        return outputs

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Images (B, C, H, W) -> ``{task: column t's last stitched output, reduced (B, F)}``."""
        stages = self.stitched_stages(x)
        last = stages[-1] if stages else [x] * len(self.task_names)
        return {t: self.columns[t].reduce(h) for t, h in zip(self.task_names, last, strict=True)}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.cascade.run(self.heads, self.features(x))

    def staged_trunks(self) -> dict[str, nn.Module]:
        """Each task's column as a :class:`TrunkInNetwork`: its layers, run with the stitches as in the network."""
        return {
            task: TrunkInNetwork(column, lambda x, t=task: self.features(x)[t]) for task, column in self.columns.items()
        }

    def parts(self) -> list[Part]:
        everyone, reach = frozenset(self.task_names), self.cascade.reach
        stitched = len(self.stitch) > 0
        parts = [Part(f"columns.{t}", c, everyone if stitched else reach[t]) for t, c in self.columns.items()]
        parts.append(Part("stitch", self.stitch, everyone))  # (0, T, T) without stages: no values, still a part
        parts += [Part(f"heads.{task}", head, reach[task]) for task, head in self.heads.items()]
        return parts


@register_model_kind
class CrossStitchModel(HeadedModel):
    """Cross-stitch networks (Misra et al., 2016): one trunk column per task, mixed after every trunk stage."""

    kind: Literal["cross_stitch"]
    trunk: Trunk = Field(description="The architecture of each task's column.")
    self_weight: float = Field(
        0.9, gt=0.0, le=1.0, description="Initial weight of a column's own features in its stitch (paper: 0.9)."
    )

    def build(self, tasks: dict[str, Task], input_shape: InputShape) -> CrossStitchNet:
        """:class:`CrossStitchNet` with heads for ``tasks``, in that order."""
        return CrossStitchNet(self, list(tasks.values()), input_shape)

    @classmethod
    def example(cls) -> ModelExample:
        model = {"kind": "cross_stitch", "trunk": CnnTrunk.example(), "reuse": "group->item"}
        return ModelExample(model, FASHION_TASKS, (1, 12, 12))
