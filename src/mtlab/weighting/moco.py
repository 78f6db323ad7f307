"""``moco``: multi-objective gradient correction (Fernando et al., ICLR 2023, Algorithm 1).

Stochastic MGDA is biased: the minimum-norm weights of one mini-batch's gradients are not those of the expected
gradients. MoCo tracks each task's gradient with a running estimate y_t and takes one projected gradient step of
the min-norm problem per step instead of solving it (k = 1, 2, ... the step count):

    y_t <- y_t - beta_k (y_t - g_t),                        beta_k = beta / k^beta_sigma,
    lambda <- Proj_simplex(lambda - gamma_k (Y Y^T + rho I) lambda),   gamma_k = gamma / k^gamma_sigma,
    d = Y^T lambda     (Y: the rows y_t).

y starts at 0 and lambda at 1/T. The defaults are the authors' (heshandevaka/Trade-Off-MOL,
``LibMTL/LibMTL/config.py`` and ``LibMTL/LibMTL/weighting/MoCo.py``): constant steps beta = gamma = 0.1
(beta_sigma = gamma_sigma = 0) and rho = 0.1. The regularisation matters: with rho = 0 the weights' subproblem is
MGDA's min-norm problem, whose solution is one-hot whenever one gradient's projection on another exceeds that
other's length (g_s . g_t >= |g_t|^2), and the projected steps reach it - every weight on one task. Two variants:

* the authors' (default): the above, with the raw gradients (their ``moco_gn = 'none'``) and the simplex projection;
* LibMTL's step sizes: ``beta: 0.5, beta_sigma: 0.5, gamma: 0.1, gamma_sigma: 0.5, rho: 0`` (LibMTL's
  ``LibMTL/weighting/MoCo.py`` defaults, steps decaying as 1/sqrt(k)). LibMTL's port also takes a softmax where
  the authors project on the simplex and rescales each gradient to its loss (g_t L_t / |g_t|, one of the optional
  normalisations of the authors' code); mtlab keeps the authors' projection and raw gradients in both.

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
    beta: float = Field(0.1, gt=0.0, le=1.0, description="Step of the gradient tracking (at k = 1; LibMTL: 0.5).")
    beta_sigma: float = Field(
        0.0, ge=0.0, description="Decay of the tracking step: beta / k^beta_sigma (authors: 0, constant; LibMTL: 0.5)."
    )
    gamma: float = Field(0.1, gt=0.0, description="Step of the weights (at k = 1).")
    gamma_sigma: float = Field(
        0.0, ge=0.0, description="Decay of the weights' step: gamma / k^gamma_sigma (authors: 0; LibMTL: 0.5)."
    )
    rho: float = Field(
        0.1, ge=0.0, description="L2 regularisation of the weights' subproblem (authors: 0.1; LibMTL: 0, which can "
        "put every weight on one task)."
    )


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
        # Each replica's own step count (K,): a replica whose step was skipped keeps its schedule.
        k = self.steps.to(torch.float64)
        beta = (o.beta / k**o.beta_sigma).to(jacobian.dtype).view(-1, 1, 1)  # (K, 1, 1)
        gamma = (o.gamma / k**o.gamma_sigma).view(-1, 1)  # (K, 1), float64 as lam
        self.tracked -= beta * (self.tracked - jacobian.detach())
        y = self.tracked.double()
        yy = torch.einsum("ktp,ksp->kts", y, y) + o.rho * torch.eye(self.task_count, dtype=y.dtype, device=y.device)
        self.lam.copy_(project_to_simplex(self.lam - gamma * torch.einsum("kts,ks->kt", yy, self.lam)))
        weights = self.lam.to(jacobian.dtype)
        return torch.einsum("kt,ktp->kp", weights, self.tracked), weights
