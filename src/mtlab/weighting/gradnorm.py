"""``gradnorm``: gradient normalisation (Chen et al., ICML 2018).

Learnable weights w_t (initialised at 1) are trained so that the gradient norms of the weighted losses at the last
shared layer W, ``G_t = |grad_W w_t L_t|``, approach a common norm scaled by each task's relative inverse training
rate:

    L_grad = sum_t | G_t - mean_i(G_i) * r_t^alpha |,   r_t = (L_t / L_t(0)) / mean_i(L_i / L_i(0)),

with the target ``mean(G) r^alpha`` held constant (the paper's Eq. 2). The network is trained on
``sum_t w_t L_t`` (w held constant), the weights on L_grad by the run's optimiser without weight decay, and after
each step the weights are renormalised to sum to T. alpha = 1.5 (the value the paper uses most). "W" is the last
parameterised layer of every shared part of the model (``ParameterViews.last_shared``); the T gradient norms cost
T partial backward passes, from the losses down to W only.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mtlab.errors import MtlabError
from mtlab.weighting.base import LossMethod, LossOptions, register_method
from mtlab.weighting.jacobian import ParameterViews


class GradNormOptions(LossOptions):
    method: Literal["gradnorm"] = "gradnorm"
    alpha: float = Field(1.5, ge=0.0, description="Strength of the pull towards equal training rates.")


@register_method
class GradNorm(LossMethod):
    Options = GradNormOptions
    paper = "Chen et al., ICML 2018 (arXiv:1711.02257)"

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        t = len(tasks)
        self.task_weights = nn.Parameter(torch.ones(replicas, t))  # w, (K, T)
        self.register_buffer("initial_losses", torch.full((replicas, t), torch.nan))  # L(0), set at the first step
        self.layer: list[Tensor] = []

    def bind(self, views: ParameterViews) -> None:
        if not views.last_shared:
            raise MtlabError("loss.method gradnorm: the model has no shared parameters (independent trunks?)")
        self.layer = views.last_shared

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        k, t = losses.shape
        norms = []
        for i in range(t):  # |grad_W L_t| per replica, (K,)
            grads = torch.autograd.grad(losses[:, i].sum(), self.layer, retain_graph=True, allow_unused=True)
            squares = [g.reshape(k, -1).pow(2).sum(1) for g in grads if g is not None]
            norms.append(torch.stack(squares).sum(0).sqrt() if squares else losses.new_zeros(k))
        norms = torch.stack(norms, dim=1).detach()  # (K, T)
        with torch.no_grad():
            self.initial_losses.copy_(torch.where(self.initial_losses.isnan(), losses, self.initial_losses))
            ratio = losses / self.initial_losses
            ratio = ratio / ratio.mean(1, keepdim=True)  # relative inverse training rate r_t
        weighted_norms = self.task_weights * norms  # G_t, (K, T)
        target = (weighted_norms.mean(1, keepdim=True) * ratio**self.options.alpha).detach()
        grad_loss = (weighted_norms - target).abs().sum(1)
        objective = (self.task_weights.detach() * losses).sum(1) + grad_loss
        return objective, self.task_weights.detach().clone()

    @torch.no_grad()
    def after_step(self, losses: Tensor, losses_after: Tensor | None) -> None:
        self.task_weights.mul_(self.task_count / self.task_weights.sum(1, keepdim=True))
