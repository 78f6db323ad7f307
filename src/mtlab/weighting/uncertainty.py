"""``uncertainty``: homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

Each task t learns s_t = log sigma_t^2 (initialised at 0). For classification with a softmax likelihood scaled by
1 / sigma^2 (the paper's Eq. 10 and its approximation), the objective is

    L = sum_t exp(-s_t) L_t + s_t / 2,

so a task's weight is exp(-s_t) and the s_t / 2 term stops every sigma from growing without bound. The s_t are
trained by the run's optimiser without weight decay. Recorded weights: exp(-s_t).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mtlab.weighting.base import LossMethod, LossOptions, register_method


class UncertaintyOptions(LossOptions):
    method: Literal["uncertainty"] = "uncertainty"


@register_method
class Uncertainty(LossMethod):
    Options = UncertaintyOptions
    paper = "Kendall, Gal & Cipolla, CVPR 2018 (arXiv:1705.07115)"
    min_tasks = 1

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        self.log_variance = nn.Parameter(torch.zeros(replicas, len(tasks)))  # s = log sigma^2, (K, T)

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        precision = torch.exp(-self.log_variance)  # (K, T)
        objective = (precision * losses + self.log_variance / 2).sum(1)
        return objective, precision.detach()
