"""``moco``: multi-objective gradient correction (Fernando et al., ICLR 2023, Algorithm 1).

Stochastic MGDA is biased: the minimum-norm weights of one mini-batch's gradients are not those of the expected
gradients. MoCo tracks each task's gradient with a running estimate y_t and takes one projected gradient step of
the min-norm problem per step instead of solving it (k = 1, 2, ... the step count):

    y_t <- y_t - beta_k (y_t - g_t),                        beta_k = beta / k^beta_sigma,
    lambda <- Proj_simplex(lambda - gamma_k (Y Y^T + rho I) lambda),   gamma_k = gamma / k^gamma_sigma,
    d = Y^T lambda     (Y: the rows y_t).

y starts at 0 and lambda at 1/T. Defaults are those of the authors' code as LibMTL ships it: beta 0.5,
beta_sigma 0.5, gamma 0.1, gamma_sigma 0.5, rho 0 (steps decaying as 1/sqrt(k)). Where that port departs from the
paper this follows the paper, as the authors' own repositories (heshandevaka/MoCo, Trade-Off-MOL) do: the weights
are projected on the simplex where LibMTL's port takes a softmax, and the gradients are used as they are where
that port rescales each to its loss (g_t L_t / |g_t|, one of the optional normalisations of the authors' code).
The paper's projection of y_t on a ball of radius L_t (a bound its analysis assumes) is left out, as in all these
codes. Recorded weights: lambda (the weights of the tracked gradients). State tensors: Y (one row of P per replica
and task, sized at the first step), lambda and the step count.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import GradientMethod, GradientOptions, register_method
from mtlab.weighting.solvers import project_to_simplex


class MocoOptions(GradientOptions):
    method: Literal["moco"] = "moco"
    gradients: Literal["parameters"] = Field(
        "parameters", description="Parameters only: the tracked gradients persist across batches."
    )
    beta: float = Field(0.5, gt=0.0, le=1.0, description="Step of the gradient tracking (at k = 1).")
    beta_sigma: float = Field(0.5, ge=0.0, description="Decay of the tracking step: beta / k^beta_sigma.")
    gamma: float = Field(0.1, gt=0.0, description="Step of the weights (at k = 1).")
    gamma_sigma: float = Field(0.5, ge=0.0, description="Decay of the weights' step: gamma / k^gamma_sigma.")
    rho: float = Field(0.0, ge=0.0, description="L2 regularisation of the weights' subproblem.")


@register_method
class MoCo(GradientMethod):
    Options = MocoOptions
    paper = "Fernando et al., ICLR 2023 (openreview dLAYGdKTi2)"
    linear_under_scaling = False  # the weights' step gamma Y Y^T grows with |g|^2

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        t = len(tasks)
        self.register_buffer("tracked", torch.zeros(replicas, t, 0))  # Y (K, T, P), sized at the first step
        self.register_buffer("lam", torch.full((replicas, t), 1.0 / t, dtype=torch.float64))
        self.register_buffer("steps", torch.zeros(replicas, dtype=torch.long))

    def aggregate(self, jacobian: Tensor, gramian: Tensor) -> tuple[Tensor, Tensor]:
        o = self.options
        if self.tracked.shape != jacobian.shape:
            self.tracked = torch.zeros_like(jacobian)
        self.steps += 1
        k = float(self.steps[0])
        self.tracked -= o.beta / k**o.beta_sigma * (self.tracked - jacobian.detach())
        y = self.tracked.double()
        yy = torch.einsum("ktp,ksp->kts", y, y) + o.rho * torch.eye(self.task_count, dtype=y.dtype, device=y.device)
        self.lam.copy_(project_to_simplex(self.lam - o.gamma / k**o.gamma_sigma * torch.einsum("kts,ks->kt", yy,
                                                                                                self.lam)))
        weights = self.lam.to(jacobian.dtype)
        return torch.einsum("kt,ktp->kp", weights, self.tracked), weights
