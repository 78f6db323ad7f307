"""``db_mtl``: dual-balancing multi-task learning (Lin et al., 2023, arXiv:2308.12029, Algorithm 1).

Two balances. Losses: each task's gradient is that of its log-loss, ``grad log(L_t + 1e-8) = g_t / L_t``, which
removes each loss's scale. Gradients: an exponential moving average of them, ``g^_t <- beta_k g^_t + (1 - beta_k)
grad log L_t`` with ``beta_k = beta / k^sigma`` (k = 1, 2, ... the step count; g^ = 0 at first), is rescaled to the
norm of the largest, ``d = sum_t (max_s |g^_s| / |g^_t|) g^_t``. Defaults are the authors' (their LibMTL code):
beta 0.9, sigma 0 (a constant beta; sigma > 0 lets the average follow the current gradients ever more closely).
The log-losses go through the method's ``task_objectives`` hook, so task-owned parameters also get the gradient of
their log-loss, as in the authors' code. Recorded weights: the weight the step's own gradient of L_t got,
``(1 - beta_k) (max_s |g^_s| / |g^_t|) / L_t``. State tensors: g^ (one row of P per replica and task, sized at the
first step) and the step count.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import GradientMethod, GradientOptions, register_method

_EPS = 1e-8


class DbMtlOptions(GradientOptions):
    method: Literal["db_mtl"] = "db_mtl"
    weights_refused: ClassVar[str] = (
        "is invariant to the scale of each task's loss (it balances the gradients of the log-losses, and "
        "log(w L) = log w + log L)"
    )
    gradients: Literal["parameters"] = Field(
        "parameters", description="Parameters only: the gradients' moving average persists across batches."
    )
    beta: float = Field(0.9, ge=0.0, lt=1.0, description="Weight of the moving average (at k = 1).")
    sigma: float = Field(0.0, ge=0.0, description="Decay of the moving average's weight: beta / k^sigma.")


@register_method
class DBMTL(GradientMethod):
    Options = DbMtlOptions
    paper = "Lin et al., 2023 (arXiv:2308.12029)"

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        self.register_buffer("average", torch.zeros(replicas, len(tasks), 0))  # g^ (K, T, P), sized at step 1
        self.register_buffer("steps", torch.zeros(replicas, dtype=torch.long))

    def task_objectives(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        return (losses + _EPS).log(), 1 / (losses.detach() + _EPS)

    def aggregate(self, jacobian: Tensor, gramian: Tensor) -> tuple[Tensor, Tensor]:
        if self.average.shape != jacobian.shape:
            self.average = torch.zeros_like(jacobian)
        self.steps += 1
        beta = self.options.beta / float(self.steps[0]) ** self.options.sigma
        self.average.lerp_(jacobian.detach(), 1 - beta)  # g^ <- beta g^ + (1 - beta) g
        norms = self.average.double().norm(dim=-1)  # (K, T)
        balance = (norms.amax(-1, keepdim=True) / (norms + _EPS)).to(jacobian.dtype)
        return torch.einsum("kt,ktp->kp", balance, self.average), balance * (1 - beta)
