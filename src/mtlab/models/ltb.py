"""The ``ltb`` model: Guo, Lee & Ulbricht (2020), "Learning to Branch for Multi-Task Learning", ICML.

A tree-structured super-graph over a staged trunk of S stages: layer s has N nodes (``branches``, default one per
task), node n of layer s being stage s of trunk copy n. Every node of layer 0 reads the input; node n of layer
s >= 1 reads a mixture of the layer s-1 outputs weighted by a *parent choice* - a Gumbel-softmax sample over its
learned branching logits theta_s[n] (N,); and task t's head reads the last layer's reduced outputs weighted by its
own choice over the N last nodes:

    d = softmax((theta + g) / tau),  g_i = -log(-log u_i),  u_i ~ U(0, 1)          (Jang et al., 2017)
    h_s[n] = stage_s^n( sum_p d_s[n, p] * h_{s-1}[p] ),     h_{-1}[p] = x   (B, C, H, W)

Training samples the choices (a soft one-hot when tau is small), so the network weights and the branching
distribution are learned together by gradient descent; where two tasks' paths choose the same parent they share it,
and the tree that the highest-probability parents form is the learned branching (:meth:`LtbNet.tree`). Evaluation
uses the choices without noise, softmax(theta / tau).

What differs from the paper: the paper anneals tau and, once the branching is learned, reads off the argmax tree as
the final architecture to train. mtlab keeps tau fixed (``model.temperature``) and evaluates the super-graph it
trained (``tree()`` reports the branching); ``model.gumbel: false`` trains with the noise-free choices. The Gumbel
noise is drawn independently per stacked replica, as dropout is, so stacked seeds equal solo runs only without it.

Shared parameters: every node and every layer's branching logits (each task's loss reaches all of them through the
soft choices); a head and its own choice logits are its task's.
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


class ParentChoice(nn.Module):
    """Branching logits ``theta`` (children, parents) and the choices they sample: (children, parents), rows sum
    to 1. Initialised at 0: every parent equally likely."""

    def __init__(self, children: int, parents: int, temperature: float, gumbel: bool):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(children, parents))
        self.temperature, self.gumbel = temperature, gumbel

    def forward(self) -> Tensor:
        logits = self.theta
        if self.training and self.gumbel:
            u = torch.rand_like(logits).clamp(torch.finfo(logits.dtype).tiny, 1.0)
            logits = logits - torch.log(-torch.log(u))  # + Gumbel(0, 1) noise
        return torch.softmax(logits / self.temperature, dim=-1)


class LtbNet(MultiTaskNet):
    """``nodes`` (N trunk copies, one per branch), ``choices`` (a :class:`ParentChoice` per layer after the first),
    ``head_choices`` (one per task over the last layer), one head per task."""

    def __init__(self, config: LtbModel, tasks: list[Task], input_shape: InputShape):
        super().__init__([task.name for task in tasks])
        self.cascade = Cascade(config, tasks)
        branches = config.branches or len(self.task_names)
        nodes = []
        for _ in range(branches):
            node, features = create_trunk(config.trunk, input_shape)
            nodes.append(node)
        self.nodes = nn.ModuleList(nodes)
        stages = len(nodes[0].stage_info)
        self.choices = nn.ModuleList(
            ParentChoice(branches, branches, config.temperature, config.gumbel) for _ in range(max(stages - 1, 0))
        )
        self.head_choices = nn.ModuleDict(
            {t: ParentChoice(1, branches, config.temperature, config.gumbel) for t in self.task_names}
        )
        self.heads = self.cascade.build_heads(config, tasks, features)

    def last_layer(self, x: Tensor) -> Tensor:
        """Inputs (B, C, H, W) -> every node's reduced output of the last layer, (N, B, F)."""
        nodes: list[StagedTrunk] = list(self.nodes)
        if not nodes[0].stage_info:
            return torch.stack([node.reduce(x) for node in nodes])
        h = torch.stack([node.run_stage(0, x) for node in nodes])  # (N, B, *shape_0)
        for s, choice in enumerate(self.choices, start=1):
            mixed = torch.einsum("np,p...->n...", choice(), h)  # each child's chosen parent output
            h = torch.stack([node.run_stage(s, h_n) for node, h_n in zip(nodes, mixed, strict=True)])
        return torch.stack([node.reduce(h_n) for node, h_n in zip(nodes, h, strict=True)])

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Images (B, C, H, W) -> ``{task: the last-layer outputs mixed by the task's choice (B, F)}``."""
        last = self.last_layer(x)  # (N, B, F)
        return {t: torch.einsum("p,pbf->bf", self.head_choices[t]()[0], last) for t in self.task_names}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.cascade.run(self.heads, self.features(x))

    def tree(self) -> dict[str, list[int]]:
        """The learned branching, each child's most probable parent: ``{"layer1": [parent of node 0, ...], ...,
        task: [last-layer node]}``. Nodes that no path from a task reaches are unused."""
        tree = {f"layer{s}": c.theta.argmax(-1).tolist() for s, c in enumerate(self.choices, start=1)}
        tree.update({t: c.theta.argmax(-1).tolist() for t, c in self.head_choices.items()})
        return tree

    def staged_trunks(self) -> dict[str, nn.Module]:
        """Each trunk copy as a :class:`TrunkInNetwork`, ``branch0`` ...: its layers, run inside the super-graph
        (its output is the node's reduced last-layer output)."""
        nodes = enumerate(self.nodes)
        return {f"branch{n}": TrunkInNetwork(node, lambda x, n=n: self.last_layer(x)[n]) for n, node in nodes}

    def parts(self) -> list[Part]:
        everyone, reach = frozenset(self.task_names), self.cascade.reach
        parts = [Part(f"nodes.{n}", node, everyone) for n, node in enumerate(self.nodes)]
        parts += [Part(f"choices.{s}", choice, everyone) for s, choice in enumerate(self.choices)]
        parts += [Part(f"head_choices.{t}", choice, reach[t]) for t, choice in self.head_choices.items()]
        parts += [Part(f"heads.{task}", head, reach[task]) for task, head in self.heads.items()]
        return parts


@register_model_kind
class LtbModel(HeadedModel):
    """Learning to Branch (Guo, Lee & Ulbricht, 2020): a tree super-graph whose child nodes choose their parent."""

    kind: Literal["ltb"]
    trunk: Trunk = Field(description="The layers of the super-graph: node n of layer s is stage s of copy n.")
    branches: int | None = Field(None, gt=0, description="Nodes per layer (default: one per task).")
    temperature: float = Field(1.0, gt=0.0, description="Gumbel-softmax temperature of the parent choices.")
    gumbel: bool = Field(
        True, description="Sample parent choices with Gumbel noise while training (false: their plain softmax)."
    )

    def build(self, tasks: dict[str, Task], input_shape: InputShape) -> LtbNet:
        """:class:`LtbNet` with heads for ``tasks``, in that order."""
        return LtbNet(self, list(tasks.values()), input_shape)

    @classmethod
    def example(cls) -> ModelExample:
        model = {"kind": "ltb", "trunk": CnnTrunk.example(), "branches": 3}
        return ModelExample(model, FASHION_TASKS, (1, 12, 12))
