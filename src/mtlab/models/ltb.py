"""The ``ltb`` model: Guo, Lee & Ulbricht (2020), "Learning to Branch for Multi-Task Learning", ICML.

A tree-structured super-graph over a staged trunk of S stages: layer s has N nodes (``branches``, default one per
task), node n of layer s being stage s of trunk copy n. Every node of layer 0 reads the input; node n of layer
s >= 1 reads a mixture of the layer s-1 outputs weighted by a *parent choice* - a Gumbel-softmax sample over its
learned branching logits theta_s[n] (N,); and task t's head reads the last layer's reduced outputs weighted by its
own choice over the N last nodes:

    d = softmax((theta + g) / tau),  g_i = -log(-log u_i),  u_i ~ U(0, 1)          (Jang et al., 2017)
    h_s[n] = stage_s^n( sum_p d_s[n, p] * h_{s-1}[p] ),     h_{-1}[p] = x   (B, C, H, W)

The network weights and the branching distribution are learned together by gradient descent; where two tasks'
paths choose the same parent they share it, and the tree that the highest-probability parents form is the learned
branching (:meth:`LtbNet.tree`).

Schedule (default): LibMTL's (``LibMTL/architecture/LTB.py``), the public implementation with explicit constants.
In epoch e = 1, 2, ... of a run of E epochs:

* warm-up, e - 1 < ``warmup_fraction`` x E (LibMTL: epoch < epochs / 100, so the first epoch at least): no choice
  is sampled, every child reads the *sum* of all its parents (LibMTL's choices of all ones);
* then tau_e = E / 20 / sqrt(e) (LibMTL's ``epochs / 20 / sqrt(epoch + 1)``, its epochs counted from 0), and the
  choices are *hard* Gumbel samples: one-hot in the forward pass, the soft sample's gradient in the backward pass
  (straight-through, torch's ``gumbel_softmax(hard=True)``).

The paper anneals tau so that the sampled choices become one-hot as the branching is learned; mtlab could not obtain
the paper's own annealing constants, so the default is LibMTL's schedule rather than a guess at the paper's.
``model.temperature`` fixes tau instead (the behaviour of earlier mtlab versions, with ``hard: false``), and
``hard: false`` trains with the soft samples. Evaluation draws no noise: hard choices evaluate the most probable
tree (one-hot argmax theta: the paper's final architecture, without retraining it; LibMTL draws a fresh sample at
test time), soft ones softmax(theta / tau); in the warm-up both read the sum, as training does.
``model.gumbel: false`` trains with the noise-free choices. The Gumbel noise is drawn independently per stacked
replica, as dropout is, so stacked seeds equal solo runs only without it. The loop tells the model each epoch
(:meth:`LtbNet.start_epoch`); a model built outside a run (analysis, a checkpoint) is in its last epoch's state.

What differs from the paper besides: once the branching is learned the paper reads off the argmax tree as the final
architecture and trains it; mtlab evaluates the super-graph it trained (``tree()`` reports the branching).

Shared parameters: every node and every layer's branching logits (each task's loss reaches all of them through the
choices); a head and its own choice logits are its task's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mtlab.config.schema import LtbModel, RunConfig
from mtlab.data.tasks import Task
from mtlab.models.base import MultiTaskNet, Part, pick_tasks
from mtlab.models.cascade import Cascade
from mtlab.models.registry import InputShape, create_trunk, register_model
from mtlab.models.staged import StagedTrunk, TrunkInNetwork


class ParentChoice(nn.Module):
    """Branching logits ``theta`` (children, parents) and the choices they sample: (children, parents), rows sum
    to 1 (all ones in the warm-up). Initialised at 0: every parent equally likely. ``temperature`` and ``warm_up``
    are the schedule's current values (set by :meth:`LtbNet.start_epoch`; plain attributes, the same for every
    stacked replica)."""

    def __init__(self, children: int, parents: int, temperature: float, gumbel: bool, hard: bool):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(children, parents))
        self.temperature, self.gumbel, self.hard = temperature, gumbel, hard
        self.warm_up = False

    def forward(self) -> Tensor:
        logits = self.theta
        if self.warm_up:
            return torch.ones_like(logits)  # every parent, summed (LibMTL's warm-up)
        if not self.training:
            return _one_hot_max(logits) if self.hard else torch.softmax(logits / self.temperature, dim=-1)
        if self.gumbel:
            u = torch.rand_like(logits).clamp(torch.finfo(logits.dtype).tiny, 1.0)
            logits = logits - torch.log(-torch.log(u))  # + Gumbel(0, 1) noise
        soft = torch.softmax(logits / self.temperature, dim=-1)
        if not self.hard:
            return soft
        return _one_hot_max(soft) - soft.detach() + soft  # one-hot forward, the soft sample's gradient


def _one_hot_max(x: Tensor) -> Tensor:
    """1 at each row's largest entry, 0 elsewhere (children, parents); vmap-safe (no index tensors)."""
    return (x == x.amax(-1, keepdim=True)).to(x.dtype)


def ltb_schedule(config: LtbModel, epoch: int, epochs: int) -> tuple[bool, float]:
    """(warm-up, temperature) of epoch ``epoch`` (1, 2, ...) of ``epochs``: LibMTL's schedule unless
    ``config.temperature`` fixes tau (the warm-up applies either way)."""
    warm_up = epoch - 1 < config.warmup_fraction * epochs
    tau = config.temperature if config.temperature is not None else epochs / 20 / math.sqrt(epoch)
    return warm_up, tau


class LtbNet(MultiTaskNet):
    """``nodes`` (N trunk copies, one per branch), ``choices`` (a :class:`ParentChoice` per layer after the first),
    ``head_choices`` (one per task over the last layer), one head per task."""

    def __init__(self, config: LtbModel, tasks: list[Task], input_shape: InputShape, epochs: int = 1):
        super().__init__([task.name for task in tasks])
        self.config, self.epochs = config, epochs
        self.cascade = Cascade(config, tasks)
        branches = config.branches or len(self.task_names)
        nodes = []
        for _ in range(branches):
            node, features = create_trunk(config.trunk, input_shape)
            nodes.append(node)
        self.nodes = nn.ModuleList(nodes)
        stages = len(nodes[0].stage_info)
        self.choices = nn.ModuleList(
            ParentChoice(branches, branches, 1.0, config.gumbel, config.hard) for _ in range(max(stages - 1, 0))
        )
        self.head_choices = nn.ModuleDict(
            {t: ParentChoice(1, branches, 1.0, config.gumbel, config.hard) for t in self.task_names}
        )
        self.heads = self.cascade.build_heads(config, tasks, features)
        self.start_epoch(epochs, epochs)  # outside a run: the state of its last epoch

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Set the choices' schedule for epoch ``epoch`` (1, 2, ...) of ``epochs`` (see :func:`ltb_schedule`)."""
        warm_up, tau = ltb_schedule(self.config, epoch, epochs)
        for choice in [*self.choices, *self.head_choices.values()]:
            choice.warm_up, choice.temperature = warm_up, tau

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


@register_model("ltb")
def build_ltb(config: RunConfig, tasks: Mapping[str, Task], input_shape: InputShape) -> LtbNet:
    """:class:`LtbNet` for ``config.model`` with heads for ``config.task_names``, in that order."""
    assert isinstance(config.model, LtbModel)
    return LtbNet(config.model, pick_tasks(tasks, config.task_names), input_shape, epochs=config.train.epochs)
