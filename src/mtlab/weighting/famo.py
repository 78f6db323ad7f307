"""``famo``: fast adaptive multitask optimisation (Liu et al., NeurIPS 2023, Algorithm 1).

Task weights ``z = softmax(xi)`` are steered so that every task's log-loss falls at the same rate, at O(1) cost:

    step:   minimise  sum_t z_t log(L_t - b_t + eps) / c,   c = sum_t z_t / (L_t - b_t + eps)  (a constant),
    after:  delta_t = log(L_t - b_t + eps) - log(L'_t - b_t + eps)  with L' the losses of the updated model on
            the same batch;  xi <- Adam(xi, grad = J_softmax(xi)^T delta, lr = ``lr``, L2 weight decay ``gamma``).

So each task's gradient gets weight ``z_t / (c (L_t - b_t + eps))``, which is what is recorded. b_t = 0 (the
losses' lower bound for cross-entropy). Defaults are the paper's: lr 0.025, gamma 0.001. The logits and their Adam
moments are state tensors of the method (one row per replica), not parameters of the run's optimiser.

``loss.weights`` w_t, as constant factors of the losses, would change nothing here (log(w L) = log w + log L, and
the same for delta). They set the rates FAMO balances instead: the logits follow ``delta_t / w_t``, so at balance
task t's log-loss falls w_t times as fast as that of a task of weight 1 (all equal by default, as in the paper). A
task of weight 0 is left out (z_t = 0; it would otherwise keep a share of c against a loss of 0).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.adam import adam_step
from mtlab.weighting.base import LossMethod, LossOptions, register_method

_EPS = 1e-8


class FamoOptions(LossOptions):
    method: Literal["famo"] = "famo"
    lr: float = Field(0.025, gt=0.0, description="Learning rate of the weight logits' Adam.")
    gamma: float = Field(0.001, ge=0.0, description="Weight decay (L2) on the weight logits.")


@register_method
class Famo(LossMethod):
    Options = FamoOptions
    paper = "Liu et al., NeurIPS 2023 (arXiv:2306.03792)"
    needs_losses_after_step = True
    weights_note: ClassVar[str] = "relative rates at which FAMO balances the log-losses' fall"

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        t = len(tasks)
        self.register_buffer("logits", torch.zeros(replicas, t))  # xi, (K, T)
        self.register_buffer("moment", torch.zeros(replicas, t))
        self.register_buffer("second_moment", torch.zeros(replicas, t))
        self.register_buffer("steps", torch.zeros(replicas))

    def _preference(self) -> Tensor:
        """(T,) loss.weights on the logits' device."""
        return self.loss_weights(self.logits.device)

    def _weights(self) -> Tensor:
        """z = softmax(xi) over the tasks of positive weight (K, T), 0 for the others."""
        return torch.softmax(self.logits.masked_fill(self._preference() <= 0, -torch.inf), dim=1)

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        z = self._weights().to(losses.dtype)  # (K, T)
        shifted = losses + _EPS
        c = (z / shifted).sum(1, keepdim=True).detach()  # (K, 1)
        objective = (z * shifted.log() / c).sum(1)
        return objective, (z / (c * shifted)).detach()

    @torch.no_grad()
    def after_step(self, losses: Tensor, losses_after: Tensor | None) -> None:
        assert losses_after is not None, "famo needs the losses after the step"
        delta = (losses.detach() + _EPS).log() - (losses_after + _EPS).log()  # (K, T)
        preference = self._preference()
        delta = torch.where(preference > 0, delta / preference.clamp(min=1e-30), 0.0)  # balance delta_t / w_t
        z = self._weights()
        grad = z * (delta - (z * delta).sum(1, keepdim=True))  # J_softmax^T delta
        grad = grad + self.options.gamma * self.logits  # Adam's L2 weight decay, as torch.optim.Adam applies it
        adam_step(self.logits, grad, self.moment, self.second_moment, self.steps, self.options.lr)
