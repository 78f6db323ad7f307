"""The ``ple`` model: Tang, Liu, Zhao & Gong (2020), "Progressive Layered Extraction (PLE): A Novel Multi-Task
Learning (MTL) Model for Personalized Recommendations", RecSys. One level is its Customized Gate Control (CGC).

Wiring, for T tasks and L levels, level l holding k experts per task and s shared experts (trunks of the level's
config, all built for the same input shape). Each task t carries a representation h_t, and the network a shared
one h_S; both start as the images x (B, C, H, W). At level l:

    task t:  h_t <- sum_i g_t(h_t)[:, i] * e_i(.)   over its own k experts (reading h_t) and the s shared (reading h_S)
    shared:  h_S <- sum_i g_S(h_S)[:, i] * e_i(.)   over all T*k + s experts of the level (levels before the last)

with gates g(h) = softmax(W flatten(h) + b) as in MMoE. An expert's output is its last stage before flattening
(B, *map_shape) - a feature map for a conv expert - so the next level's experts are built for that shape; at the
last level it is reduced to features (B, F), and task t's head reads h_t (label reuse as in ``multitask``).

Shared parameters (loss reach through the gates): shared experts and shared gates; the task-t experts of every
level but the last (the shared gate of their level mixes them into h_S); task t's gates of levels 0..L-3 (their
output feeds task-t experts that the next shared gate mixes). Task t owns its last-level experts, its gates of the
last two levels, and its head. CGC (L = 1): shared experts shared, everything else the task's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field
from torch import Tensor, nn

from mtlab.config.base import InputShape, ModelExample, TrunkOptions, at, register_model_kind
from mtlab.data.tasks import Task
from mtlab.models.base import FASHION_TASKS, MultiTaskNet, Part
from mtlab.models.cascade import Cascade, HeadedModel
from mtlab.models.mmoe import Gate, mix
from mtlab.models.registry import create_trunk
from mtlab.models.staged import StagedTrunk
from mtlab.models.trunks.cnn import CnnTrunk

if TYPE_CHECKING:
    from mtlab.config.schema import RunConfig, Trunk


def _experts(config: TrunkOptions, input_shape: tuple[int, ...], count: int) -> nn.ModuleList:
    return nn.ModuleList(create_trunk(config, input_shape)[0] for _ in range(count))  # type: ignore[arg-type]


class PleLevel(nn.Module):
    """One extraction level: ``task_experts[t]`` (k each), ``shared_experts`` (s), ``gates[t]`` and, unless it is
    the last level, ``shared_gate``."""

    def __init__(
        self, config: TrunkOptions, model: PleModel, tasks: list[str], input_shape: tuple[int, ...], *, last: bool
    ):
        super().__init__()
        k, s = model.task_experts, model.shared_experts
        self.last = last
        self.task_experts = nn.ModuleDict({t: _experts(config, input_shape, k) for t in tasks})
        self.shared_experts = _experts(config, input_shape, s)
        self.gates = nn.ModuleDict({t: Gate(input_shape, k + s) for t in tasks})
        self.shared_gate = None if last else Gate(input_shape, len(tasks) * k + s)
        expert: StagedTrunk = self.shared_experts[0]
        self.output_shape: tuple[int, ...] = (expert.out_features,) if last else expert.map_shape

    def _run(self, expert: StagedTrunk, h: Tensor) -> Tensor:
        return expert(h) if self.last else expert.forward_maps(h)  # (B, F) or (B, *map_shape)

    def forward(self, h: dict[str, Tensor], shared: Tensor) -> tuple[dict[str, Tensor], Tensor | None]:
        # h: {task: (B, *input_shape)}, shared (B, *input_shape) -> the same for the next level (shared: None last)
        shared_out = [self._run(e, shared) for e in self.shared_experts]  # s x (B, *output_shape)
        task_out = {t: [self._run(e, h[t]) for e in experts] for t, experts in self.task_experts.items()}
        new_h = {t: mix(self.gates[t](h[t]), task_out[t] + shared_out) for t in self.task_experts}
        if self.shared_gate is None:
            return new_h, None
        everything = [out for outs in task_out.values() for out in outs] + shared_out
        return new_h, mix(self.shared_gate(shared), everything)


class PleNet(MultiTaskNet):
    """``levels`` (:class:`PleLevel`) and one head per task."""

    def __init__(self, config: PleModel, tasks: list[Task], input_shape: InputShape):
        super().__init__([task.name for task in tasks])
        self.cascade = Cascade(config, tasks)
        levels = []
        shape: tuple[int, ...] = input_shape
        for i, level_config in enumerate(config.levels):  # the config checked that each level accepts its input
            level = PleLevel(level_config, config, self.task_names, shape, last=i == len(config.levels) - 1)
            levels.append(level)
            shape = level.output_shape
        self.levels = nn.ModuleList(levels)
        self.heads = self.cascade.build_heads(config, tasks, shape[0])

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Images (B, C, H, W) -> ``{task: h_t after the last level (B, F)}``."""
        h: dict[str, Tensor] = {t: x for t in self.task_names}
        shared: Tensor | None = x
        for level in self.levels:
            assert shared is not None
            h, shared = level(h, shared)
        return h

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.cascade.run(self.heads, self.features(x))

    def staged_trunks(self) -> dict[str, nn.Module]:
        """The first level's experts (``<task>.<i>``, ``shared.<i>``): they read the images and are called whole."""
        first = self.levels[0]
        trunks = {f"{t}.{i}": e for t, experts in first.task_experts.items() for i, e in enumerate(experts)}
        trunks.update({f"shared.{i}": e for i, e in enumerate(first.shared_experts)})
        return trunks

    def parts(self) -> list[Part]:
        everyone, reach = frozenset(self.task_names), self.cascade.reach
        depth = len(self.levels)
        parts = []
        for i, level in enumerate(self.levels):
            for t, experts in level.task_experts.items():
                parts.append(Part(f"levels.{i}.task_experts.{t}", experts, everyone if i < depth - 1 else reach[t]))
            parts.append(Part(f"levels.{i}.shared_experts", level.shared_experts, everyone))
            for t, gate in level.gates.items():
                parts.append(Part(f"levels.{i}.gates.{t}", gate, everyone if i < depth - 2 else reach[t]))
            if level.shared_gate is not None:
                parts.append(Part(f"levels.{i}.shared_gate", level.shared_gate, everyone))
        parts += [Part(f"heads.{task}", head, reach[task]) for task, head in self.heads.items()]
        return parts


@register_model_kind
class PleModel(HeadedModel):
    """Progressive Layered Extraction (Tang et al., 2020): levels of task-specific and shared experts with gates.

    One level is Customized Gate Control (CGC). Level ``l``'s experts are built for the output of level ``l - 1``
    (its last stage, before flattening), so a level is any trunk config that accepts that shape.
    """

    kind: Literal["ple"]
    levels: list[Trunk] = Field(min_length=1, description="Expert architecture per level (one level = CGC).")
    task_experts: int = Field(1, gt=0, description="Experts per task per level.")
    shared_experts: int = Field(1, gt=0, description="Shared experts per level.")

    trunk_field: ClassVar[str] = "levels"

    def trunk_configs(self) -> list[TrunkOptions]:
        return list(self.levels)

    def check_run(self, run: RunConfig) -> None:
        super().check_run(run)
        for i, (before, level) in enumerate(zip(self.levels, self.levels[1:], strict=False), start=1):
            if before.ends_flat() and not level.reads_vectors():
                raise at(
                    f"model.levels[{i}]",
                    f"a {level.type} level needs a feature map, but level {i - 1} ends with dense layers; "
                    "end the earlier levels with convolutions or make this level an mlp",
                )

    def sharing_label(self) -> str:
        return "cgc" if len(self.levels) == 1 else f"ple ({len(self.levels)} levels)"

    def build(self, tasks: dict[str, Task], input_shape: InputShape) -> PleNet:
        """:class:`PleNet` with heads for ``tasks``, in that order."""
        return PleNet(self, list(tasks.values()), input_shape)

    @classmethod
    def example(cls) -> ModelExample:
        model = {"kind": "ple", "levels": [CnnTrunk.example(), {"type": "mlp", "widths": [6]}], "task_experts": 2}
        return ModelExample(model, FASHION_TASKS, (1, 12, 12))
