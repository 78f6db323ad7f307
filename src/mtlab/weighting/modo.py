"""``modo``: multi-objective gradient descent with double sampling (Chen, Fernando et al., NeurIPS 2023, Eq. 2.9).

Stochastic MGDA with two independent samples per step, so that the weights' update is an unbiased estimate of the
min-norm problem's gradient (one batch's Gramian J J^T is biased: its diagonal carries the gradients' variance):

    lambda <- Proj_simplex(lambda - gamma (J_1 J_2^T + rho I) lambda),     d = J^T lambda,

J_1 and J_2 the task Jacobians of two independent samples and J that of both (the mean of the two, the paper's
Eq. 2.9b; the authors' code takes their sum, which is the same step at twice the learning rate). lambda starts at
1/T. The two samples are the two halves of each batch: the loop splits it for a method declaring
``samples = 2`` and hands ``aggregate`` the mean Jacobian with ``J_1 J_2^T`` (K, T, T) - not symmetric - in place of
the Gramian. Defaults are the authors' (and TorchJD's): gamma 0.1, rho 0.1. State tensors: lambda.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method
from mtlab.weighting.solvers import project_to_simplex


class ModoOptions(GradientOptions):
    method: Literal["modo"] = "modo"
    gradients: Literal["parameters"] = Field(
        "parameters", description="Parameters only: each half of the batch has its own representation."
    )
    gamma: float = Field(0.1, gt=0.0, description="Step of the weights.")
    rho: float = Field(0.1, ge=0.0, description="L2 regularisation of the weights' subproblem.")


@register_method
class MoDo(GramianMethod):
    Options = ModoOptions
    paper = "Chen, Fernando, Ying & Chen, NeurIPS 2023 (arXiv:2305.20057)"
    samples: ClassVar[int] = 2
    linear_under_scaling = False  # the weights' step gamma J_1 J_2^T grows with |g|^2
    when_gradients_agree = "mean"

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        self.register_buffer("lam", torch.full((replicas, len(tasks)), 1.0 / len(tasks), dtype=torch.float64))

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        cross = gramian.double()  # J_1 J_2^T
        step = torch.einsum("kts,ks->kt", cross, self.lam) + self.options.rho * self.lam
        self.lam.copy_(project_to_simplex(self.lam - self.options.gamma * step))
        return self.lam.to(gramian.dtype)
