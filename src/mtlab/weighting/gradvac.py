"""``gradvac``: gradient vaccine (Wang et al., ICLR 2021, Algorithm 1).

PCGrad only acts on negative cosine similarity; GradVac sets an adaptive target for every task pair, an
exponential moving average of their observed cosine, ``phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi_ij``
(initialised at 0). For each task i, visiting the other tasks j in a random order, when the cosine
``phi_ij = cos(g_i', g_j)`` is below the target, ``g_i'`` is moved towards g_j until it reaches it:

    g_i' <- g_i' + |g_i'| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) / (|g_j| sqrt(1 - phi_hat^2)) g_j.

The update is ``sum_i g_i'``, tracked as coefficients on the original gradients over the Gramian (like PCGrad).
beta = 0.01 (the paper's value; LibMTL and TorchJD default to 0.5). The targets are state, one (T, T) matrix per
replica.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method
from mtlab.weighting.orders import other_task_orders

_EPS = 1e-8


class GradvacOptions(GradientOptions):
    method: Literal["gradvac"] = "gradvac"
    beta: float = Field(0.01, ge=0.0, le=1.0, description="Step of the moving average of the target cosines.")


@register_method
class GradVac(GramianMethod):
    Options = GradvacOptions
    paper = "Wang et al., ICLR 2021 (arXiv:2010.05874)"
    when_gradients_agree = "sum"
    task_order = "two_tasks"

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        t = len(tasks)
        self.register_buffer("targets", torch.zeros(replicas, t, t, dtype=torch.float64))  # phi_hat (K, T, T)

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        g = gramian.double()
        k, t, _ = g.shape
        beta = self.options.beta
        rows = torch.arange(k, device=g.device)
        orders = other_task_orders(self, t).to(g.device)
        coefficients = torch.eye(t, dtype=g.dtype, device=g.device).repeat(k, 1, 1)  # g_i' = sum_k C_ik g_k
        targets = self.targets
        for i in range(t):
            products = torch.einsum("ks,kst->kt", coefficients[:, i], g)  # g_i' . g_j for every j, (K, T)
            for p in range(t - 1):
                j = orders[:, i, p]
                dot = products[rows, j]
                norm_i = (products * coefficients[:, i]).sum(-1).clamp(min=0).sqrt()
                norm_j = g[rows, j, j].clamp(min=0).sqrt()
                cosine = dot / (norm_i * norm_j + _EPS)
                target = targets[rows, i, j]
                root_cos = (1 - cosine**2).clamp(min=0).sqrt()
                root_target = (1 - target**2).clamp(min=0).sqrt()
                step = norm_i * (target * root_cos - cosine * root_target) / (norm_j * root_target + _EPS)
                step = torch.where(cosine < target, step, torch.zeros_like(step))
                coefficients[rows, i, j] += step
                products = products + step[:, None] * g[rows, j]
                targets[rows, i, j] = (1 - beta) * target + beta * cosine
        return coefficients.sum(1).to(gramian.dtype)
