"""``dwa``: dynamic weight average (Liu, Johns & Davison, CVPR 2019, Eq. 7).

Weights change once per epoch, from the rate at which each task's epoch-mean training loss fell:

    w_t(e) = T exp(r_t(e - 1) / tau) / sum_i exp(r_i(e - 1) / tau),   r_t(e - 1) = L_t(e - 1) / L_t(e - 2),

with ``w_t = 1`` for the first two epochs (no rate yet) and temperature ``tau = 2`` (the paper's value).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import LossMethod, LossOptions, register_method


class DwaOptions(LossOptions):
    method: Literal["dwa"] = "dwa"
    temperature: float = Field(2.0, gt=0.0, description="tau: higher = closer to equal weights.")


@register_method
class DynamicWeightAverage(LossMethod):
    Options = DwaOptions
    paper = "Liu, Johns & Davison, CVPR 2019 (arXiv:1803.10704)"

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        t = len(tasks)
        self.register_buffer("current", torch.ones(replicas, t))  # this epoch's weights (K, T)
        self.register_buffer("previous_losses", torch.full((replicas, 2, t), torch.nan))  # epochs e-2, e-1

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        return (self.current * losses).sum(1), self.current.clone()

    def after_epoch(self, losses: Tensor) -> None:
        history = torch.stack([self.previous_losses[:, 1], losses.to(self.current)], dim=1)  # (K, 2, T)
        self.previous_losses.copy_(history)
        rate = history[:, 1] / history[:, 0]  # (K, T); NaN until two epochs are known
        weights = self.task_count * torch.softmax(rate / self.options.temperature, dim=1)
        self.current.copy_(torch.where(rate.isnan().any(1, keepdim=True), torch.ones_like(weights), weights))
