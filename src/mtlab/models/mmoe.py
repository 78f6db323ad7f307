"""The ``mmoe`` model: Ma, Zhao, Yi, Chen, Hong & Chi (2018), "Modeling Task Relationships in Multi-task Learning
with Multi-gate Mixture-of-Experts", KDD.

Wiring, for T tasks and E experts: every expert is a trunk f_e mapping the images x (B, C, H, W) to features
(B, F); each task t has a gate, a linear layer on the flattened images with a softmax over the experts,

    g_t(x) = softmax(W_t flatten(x) + b_t)   (B, E),        h_t = sum_e g_t(x)[:, e] * f_e(x)   (B, F)

and task t's head reads h_t (label reuse between heads as in ``multitask``). With one expert MMoE is hard sharing.

Shared parameters: every expert (each task's gate weights every expert, so every task's loss reaches it). The
gate of task t is t's own, as is its head.
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
from mtlab.models.staged import flat_width
from mtlab.models.trunks.cnn import CnnTrunk

if TYPE_CHECKING:
    from mtlab.config.schema import Trunk


class Gate(nn.Module):
    """A softmax over ``choices`` read from an input of ``shape`` (flattened): (B, *shape) -> (B, choices)."""

    def __init__(self, shape: tuple[int, ...], choices: int):
        super().__init__()
        self.linear = nn.Linear(flat_width(shape), choices)

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.linear(x.flatten(1)), dim=-1)


def mix(weights: Tensor, outputs: list[Tensor]) -> Tensor:
    """Gate ``weights`` (B, E) over E ``outputs`` (B, *shape) each -> their weighted sum (B, *shape)."""
    stacked = torch.stack(outputs, dim=1)  # (B, E, *shape)
    return torch.einsum("be,be...->b...", weights, stacked)


class MmoeNet(MultiTaskNet):
    """``experts`` (E trunks), ``gates[t]`` and one head per task."""

    def __init__(self, config: MmoeModel, tasks: list[Task], input_shape: InputShape):
        super().__init__([task.name for task in tasks])
        self.cascade = Cascade(config, tasks)
        experts = []
        for _ in range(config.experts):
            expert, features = create_trunk(config.trunk, input_shape)
            experts.append(expert)
        self.experts = nn.ModuleList(experts)
        self.gates = nn.ModuleDict({t: self.make_gate(config, input_shape) for t in self.task_names})
        self.heads = self.cascade.build_heads(config, tasks, features)

    def make_gate(self, config: MmoeModel, input_shape: InputShape) -> nn.Module:
        """One task's gate: inputs (B, *input_shape) -> expert weights (B, E), each row summing to 1."""
        return Gate(input_shape, config.experts)

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Images (B, C, H, W) -> ``{task: the gated mixture of expert features (B, F)}``."""
        outputs = [expert(x) for expert in self.experts]  # E x (B, F)
        return {t: mix(self.gates[t](x), outputs) for t in self.task_names}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.cascade.run(self.heads, self.features(x))

    def staged_trunks(self) -> dict[str, nn.Module]:
        """The experts, ``expert0`` ... (each reads the images and is called whole)."""
        return {f"expert{e}": expert for e, expert in enumerate(self.experts)}

    def parts(self) -> list[Part]:
        reach = self.cascade.reach
        parts = [Part(f"experts.{e}", expert, frozenset(self.task_names)) for e, expert in enumerate(self.experts)]
        parts += [Part(f"gates.{t}", gate, reach[t]) for t, gate in self.gates.items()]
        parts += [Part(f"heads.{task}", head, reach[task]) for task, head in self.heads.items()]
        return parts


@register_model_kind
class MmoeModel(HeadedModel):
    """Multi-gate Mixture-of-Experts (Ma et al., 2018): expert trunks, one softmax gate per task."""

    kind: Literal["mmoe"]
    trunk: Trunk = Field(description="The architecture of each expert.")
    experts: int = Field(4, gt=0, description="Number of expert trunks, all shared.")

    def build(self, tasks: dict[str, Task], input_shape: InputShape) -> MmoeNet:
        """:class:`MmoeNet` with heads for ``tasks``, in that order."""
        return MmoeNet(self, list(tasks.values()), input_shape)

    @classmethod
    def example(cls) -> ModelExample:
        model = {"kind": "mmoe", "trunk": CnnTrunk.example(), "experts": 3}
        return ModelExample(model, FASHION_TASKS, (1, 12, 12))
