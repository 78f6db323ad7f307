"""``excess_mtl``: robust multi-task learning with excess risks (He et al., ICML 2024, Algorithm 1).

Task weights alpha on the simplex (1/T at first) move towards the tasks with the largest excess risk, the distance
of each loss from its own optimum, estimated from the task gradients alone (the paper's Eqs. 6-7): with the AdaGrad
sum of each task's squared gradients S_t <- S_t + g_t^2 (elementwise) as diagonal Hessian,

    E_t = sum_p g_tp^2 / sqrt(S_tp + 1e-7),   E_t <- E_t / E_t(first step)   (the paper's scale processing),
    alpha <- softmax(log alpha + eta E)      (exponentiated gradient, Eq. 9),   d = sum_t alpha_t g_t.

As in the authors' code (yifei-he/ExcessMTL, ``LibMTL/LibMTL/weighting/ExcessMTL.py``; LibMTL's
``LibMTL/weighting/ExcessMTL.py`` is the same), the first step only records its E as the baseline and keeps the
weights uniform (d is the mean gradient); the updates start at the second step, each with E divided by that
baseline. ``warmup_steps`` > 0 instead keeps uniform weights for that many steps and takes the mean E over them as
the baseline (the paper's Appendix C.1). Where mtlab differs from TorchJD 0.18: its ``ExcessMTLWeighting`` (with
no warm-up) also takes an exponentiated step at the first call, with the raw E - which grows with the parameter
count, so that one step fixes the weights for the rest of a run; mtlab's weights at every later step equal
TorchJD's with that first step divided out (tests/test_weighting.py checks both). As in TorchJD the baseline
carries a 1e-7 guard (a task without gradient) and the weights start at 1/T, as in the paper (the authors' code
starts at 1 and renormalises to sum T: the same update, T times as long). eta = ``step_size``: 0.01, the authors'
default (TorchJD's is 1.0). State tensors of the method, saved with the run: S (one row of P per replica and
task, sized at the first step), alpha, the baseline and the step count.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import GradientMethod, GradientOptions, register_method


class ExcessMtlOptions(GradientOptions):
    method: Literal["excess_mtl"] = "excess_mtl"
    gradients: Literal["parameters"] = Field(
        "parameters", description="Parameters only: the squared-gradient sums are per shared parameter."
    )
    step_size: float = Field(0.01, gt=0.0, description="eta of the exponentiated-gradient step of the weights.")
    warmup_steps: int = Field(0, ge=0, description="Steps of uniform weights whose mean excess risk is the baseline.")


@register_method
class ExcessMTL(GradientMethod):
    Options = ExcessMtlOptions
    paper = "He et al., ICML 2024 (PMLR 235, he24n)"
    # Uniform at the first step, then E / baseline, which is invariant to a common scale of the gradients.
    when_gradients_agree = "mean"

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        t = len(tasks)
        self.register_buffer("squared_gradients", torch.zeros(replicas, t, 0))  # S (K, T, P), sized at step 1
        self.register_buffer("alpha", torch.full((replicas, t), 1.0 / t, dtype=torch.float64))
        self.register_buffer("baseline", torch.zeros(replicas, t, dtype=torch.float64))
        self.register_buffer("steps", torch.zeros(replicas, dtype=torch.long))

    def aggregate(self, jacobian: Tensor, gramian: Tensor) -> tuple[Tensor, Tensor]:
        if self.squared_gradients.shape != jacobian.shape:
            self.squared_gradients = torch.zeros_like(jacobian)
        squares = jacobian.detach() ** 2
        self.squared_gradients += squares
        excess = (squares / (self.squared_gradients + 1e-7).sqrt()).sum(-1).double()  # E (K, T)
        step, warmup = int(self.steps[0]), self.options.warmup_steps
        self.steps += 1
        if step < warmup:
            self.baseline += excess / warmup  # the warm-up mean, complete after the last warm-up step
        elif step == 0:
            self.baseline.copy_(excess)  # the authors' first step: the baseline only, the weights stay uniform
        else:
            self.alpha.copy_(torch.softmax(self.alpha.log() + self.options.step_size * excess / (self.baseline + 1e-7),
                                           dim=-1))
        weights = self.alpha.to(jacobian.dtype)
        return torch.einsum("kt,ktp->kp", weights, jacobian), weights
