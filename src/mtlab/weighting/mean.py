"""``mean``: the update is the mean of the task gradients, ``d = (1/T) sum_t g_t``.

The gradient-step baseline (TorchJD's ``Mean``): equal to ``fixed`` with weights 1/T, but computed from per-task
gradients, so it measures what the per-task-gradient step itself costs.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method


class MeanOptions(GradientOptions):
    method: Literal["mean"] = "mean"


@register_method
class Mean(GramianMethod):
    Options = MeanOptions
    paper = "the mean of the task gradients"
    when_gradients_agree = "mean"
    min_tasks = 1

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        k, t, _ = gramian.shape
        return torch.full((k, t), 1.0 / t, dtype=gramian.dtype, device=gramian.device)
