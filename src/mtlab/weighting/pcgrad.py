"""``pcgrad``: projecting conflicting gradients (Yu et al., NeurIPS 2020, Algorithm 1).

For each task i, visiting the other tasks j in a random order: if ``g_i^PC . g_j < 0``, remove the conflicting
component, ``g_i^PC <- g_i^PC - (g_i^PC . g_j / |g_j|^2) g_j``. The update is the sum ``sum_i g_i^PC``.

Every projected gradient stays a combination of the original ones, so the code tracks the coefficients
``g_i^PC = sum_k C_ik g_k`` on the Gramian alone (as TorchJD does) and returns the weights ``sum_i C_i``: with two
tasks that is the paper's closed form; for T > 2 the orders come from each replica's generator.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method
from mtlab.weighting.orders import other_task_orders


class PcgradOptions(GradientOptions):
    method: Literal["pcgrad"] = "pcgrad"


@register_method
class PCGrad(GramianMethod):
    Options = PcgradOptions
    paper = "Yu et al., NeurIPS 2020 (arXiv:2001.06782)"
    when_gradients_agree = "sum"
    task_order = "two_tasks"

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        g = gramian.double()
        k, t, _ = g.shape
        rows = torch.arange(k, device=g.device)
        orders = other_task_orders(self, t).to(g.device)  # (K, T, T-1)
        coefficients = torch.eye(t, dtype=g.dtype, device=g.device).repeat(k, 1, 1)  # C (K, T, T)
        for i in range(t):
            for p in range(t - 1):
                j = orders[:, i, p]  # (K,)
                inner = (coefficients[:, i] * g[rows, j]).sum(-1)  # g_i^PC . g_j, (K,)
                norm_j = g[rows, j, j]
                step = torch.where(inner < 0, -inner / norm_j.clamp(min=1e-30), torch.zeros_like(inner))
                coefficients[rows, i, j] += step
        return coefficients.sum(1).to(gramian.dtype)
