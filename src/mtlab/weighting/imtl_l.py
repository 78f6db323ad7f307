"""``imtl_l``: impartial multi-task learning, loss balance (Liu et al., ICLR 2021, "Towards Impartial Multi-task
Learning", Section 3.2).

Each task t learns a scale s_t (initialised at 0, so training starts from the plain sum) and the objective is

    L = sum_t exp(s_t) L_t - s_t.

Minimising over s_t gives ``exp(s_t) L_t = 1``: every scaled loss is driven to the same value, whatever the task's
loss scale (the -s_t term stops exp(s_t) from collapsing to 0). The s_t are trained by the run's optimiser, without
weight decay, jointly with the model. Recorded weights: ``exp(s_t)``. ``loss.weights`` multiply the losses before
the method sees them, so they act until the learned scales absorb them (at the optimum of s the scaled loss is 1
for every task). A task of weight 0 is left out (its s_t would otherwise grow without bound against a loss of 0).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mtlab.weighting.base import LossMethod, LossOptions, register_method


class ImtlLOptions(LossOptions):
    method: Literal["imtl_l"] = "imtl_l"


@register_method
class ImtlL(LossMethod):
    Options = ImtlLOptions
    paper = "Liu et al., ICLR 2021 (\"Towards Impartial Multi-task Learning\", IMTL-L)"

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        self.log_scale = nn.Parameter(torch.zeros(replicas, len(tasks)))  # s, (K, T)

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        kept = self.loss_weights(losses.device) > 0
        scale = torch.exp(self.log_scale)  # (K, T)
        terms = torch.where(kept, scale * losses - self.log_scale, torch.zeros_like(losses))
        return terms.sum(1), torch.where(kept, scale, torch.zeros_like(scale)).detach()
