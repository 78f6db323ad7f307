"""The ``dselect_k`` model: Hazimeh, Zhao, Chowdhery, Sathiamoorthy, Chen, Mazumder, Hong & Chi (2021), "DSelect-k:
Differentiable Selection in the Mixture of Experts with Applications to Multi-Task Learning", NeurIPS.

The wiring is MMoE's (:mod:`mtlab.models.mmoe`: E expert trunks, one gate per task mixing their features); only the
gate differs. Softmax gates give every expert a non-zero weight; a DSelect-k gate gives at most ``k``, and is still
differentiable. With E = 2^m experts, expert i has the m-bit binary code c_i. One *single-expert selector* with
logits z in R^m picks expert i with weight

    r(z)_i = prod_j  S(z_j) if c_ij = 1 else 1 - S(z_j)         (sums to 1 over i)

where S is the smooth step - 0 below -gamma/2, 1 above gamma/2, and -2 t^3 / gamma^3 + 3 t / (2 gamma) + 1/2
between - so once every z_j leaves the cubic region r(z) is one-hot (and its gradient is 0: the choice is made).
A gate combines k selectors z_1..z_k with softmax weights over logits w:

    a = sum_l softmax(w)_l * r(z_l)      (E,), at most k non-zeros once the selectors have converged

``routing: task`` learns z (k, m) and w (k,) per task (the paper's "static" gate, its multi-task setting);
``routing: example`` computes them per input by linear maps of the flattened input (the paper's per-example gate,
which is what LibMTL's DSelect_k uses, as MMoE's gates do). Initialisation as the authors' code: z (weights and
biases) uniform in (-gamma/100, gamma/100), so every selector starts undecided, and w uniform in (-0.05, 0.05).

Left out: the authors' optional entropy regulariser (off by default in their code) and the penalty that keeps
selectors off codes naming no expert when E is not a power of 2 - ``model.experts`` must be a power of 2 instead.

Shared parameters: every expert (any task's gate may choose any expert while it learns); gates and heads are their
task's own.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mtlab.config.base import InputShape, ModelExample, at, register_model_kind
from mtlab.data.tasks import Task
from mtlab.models.base import FASHION_TASKS
from mtlab.models.cascade import HeadedModel
from mtlab.models.mmoe import MmoeNet
from mtlab.models.staged import flat_width
from mtlab.models.trunks.cnn import CnnTrunk

if TYPE_CHECKING:
    from mtlab.config.schema import RunConfig, Trunk


def smooth_step(t: Tensor, gamma: float) -> Tensor:
    """The cubic smooth step of Hazimeh et al. (2020): 0 for t <= -gamma/2, 1 for t >= gamma/2, C^1 in between."""
    t = t.clamp(-gamma / 2, gamma / 2)  # the cubic is exactly 0 and 1 at the ends, with zero slope outside
    return -2 / gamma**3 * t**3 + 3 / (2 * gamma) * t + 0.5


def binary_codes(experts: int, device: torch.device) -> Tensor:
    """(E, m) booleans: row i is the m-bit binary code of expert i, most significant bit first."""
    bits = int(math.log2(experts))
    powers = 2 ** torch.arange(bits - 1, -1, -1, device=device)
    return (torch.arange(experts, device=device)[:, None] // powers) % 2 == 1


def selector_weights(z: Tensor, gamma: float, experts: int) -> Tensor:
    """Selector logits z (..., k, m) -> each selector's weights over the experts (..., k, E)."""
    s = smooth_step(z, gamma)[..., None, :]  # (..., k, 1, m)
    codes = binary_codes(experts, z.device)  # (E, m)
    return torch.where(codes, s, 1 - s).prod(-1)


class DselectKGate(nn.Module):
    """A task's gate: inputs (B, *shape) -> expert weights (B, E), at most ``k`` non-zero once converged."""

    def __init__(self, shape: InputShape, experts: int, k: int, gamma: float, per_example: bool):
        super().__init__()
        self.experts, self.k, self.gamma = experts, k, gamma
        bits = int(math.log2(experts))
        self.per_example = per_example
        if per_example:
            self.z = nn.Linear(flat_width(shape), k * bits)
            self.w = nn.Linear(flat_width(shape), k)
            nn.init.uniform_(self.z.weight, -gamma / 100, gamma / 100)
            nn.init.uniform_(self.z.bias, -gamma / 100, gamma / 100)
            nn.init.uniform_(self.w.weight, -0.05, 0.05)
            nn.init.uniform_(self.w.bias, -0.05, 0.05)
        else:
            self.z = nn.Parameter(torch.empty(k, bits).uniform_(-gamma / 100, gamma / 100))
            self.w = nn.Parameter(torch.empty(k).uniform_(-0.05, 0.05))

    def weights(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(selector weights over the k selectors (B, k) or (k,), selector outputs (B, k, E) or (k, E))."""
        if self.per_example:
            flat = x.flatten(1)  # (B, D)
            z = self.z(flat).unflatten(-1, (self.k, -1))  # (B, k, m)
            return torch.softmax(self.w(flat), dim=-1), selector_weights(z, self.gamma, self.experts)
        return torch.softmax(self.w, dim=-1), selector_weights(self.z, self.gamma, self.experts)

    def forward(self, x: Tensor) -> Tensor:
        mix, selectors = self.weights(x)
        gate = torch.einsum("...l,...le->...e", mix, selectors)  # (B, E) or (E,)
        return gate.expand(x.shape[0], self.experts) if gate.ndim == 1 else gate


class DselectKNet(MmoeNet):
    """MMoE wiring (``experts``, ``gates[t]``, one head per task) with :class:`DselectKGate` gates."""

    def make_gate(self, config: DselectKModel, input_shape: InputShape) -> nn.Module:
        return DselectKGate(input_shape, config.experts, config.k, config.gamma, config.routing == "example")


@register_model_kind
class DselectKModel(HeadedModel):
    """DSelect-k (Hazimeh et al., 2021): MMoE's experts with gates that select at most ``k`` of them, smoothly."""

    kind: Literal["dselect_k"]
    trunk: Trunk = Field(description="The architecture of each expert.")
    experts: int = Field(4, ge=2, description="Number of expert trunks, a power of 2 (2, 4, 8, ...).")
    k: int = Field(2, gt=0, description="Single-expert selectors per task: at most k experts get a non-zero weight.")
    gamma: float = Field(1.0, gt=0.0, description="Width of the smooth-step's cubic region (paper: 1).")
    routing: Literal["example", "task"] = Field(
        "example", description="'example': each input chooses its experts (a linear map of the input); 'task': one "
        "static choice per task."
    )

    def check_run(self, run: RunConfig) -> None:
        super().check_run(run)
        # The gate addresses experts by m-bit codes; with E < 2^m some codes name no expert and the paper needs an
        # extra penalty to keep selectors off them - a power of 2 needs none.
        if self.experts & (self.experts - 1):
            power = 1 << (self.experts - 1).bit_length()
            raise at("model.experts", f"{self.experts} is not a power of 2; DSelect-k addresses experts by binary "
                      f"codes - use {power // 2} or {power}")
        if self.k > self.experts:
            raise at("model.k", f"{self.k} selectors for {self.experts} experts; k is at most model.experts")

    def build(self, tasks: dict[str, Task], input_shape: InputShape) -> DselectKNet:
        """:class:`DselectKNet` with heads for ``tasks``, in that order."""
        return DselectKNet(self, list(tasks.values()), input_shape)

    @classmethod
    def example(cls) -> ModelExample:
        model = {"kind": "dselect_k", "trunk": CnnTrunk.example(), "experts": 2, "k": 1, "routing": "task"}
        return ModelExample(model, FASHION_TASKS, (1, 12, 12))
