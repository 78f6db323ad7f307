"""``fixed``: linear scalarisation with constant weights, ``L = sum_t w_t L_t`` (the default).

The weights are the ``loss.weights`` every method shares (``w_t = 1`` unless given), so this method only sums the
weighted losses the loop hands it. The weighting of the original studies: fine 2 : coarse 1 (CIFAR-100 hierarchy),
lambda * item + (1 - lambda) * group (Fashion-MNIST), 0.5 * main + 0.25 * each auxiliary digit (MNIST pairs).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from mtlab.weighting.base import LossMethod, LossOptions, register_method


class FixedOptions(LossOptions):
    method: Literal["fixed"] = "fixed"


@register_method
class Fixed(LossMethod):
    Options = FixedOptions
    paper = "linear scalarisation (the weighted sum of the task losses)"
    min_tasks = 1
    static = True

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        return losses.sum(1), torch.ones_like(losses).detach()  # (K,), (K, T)
