"""``auto_lambda``: task weights learned by a one-step look-ahead (Liu, Liu & Davison, TMLR 2022, "Auto-Lambda:
Disentangling Dynamic Task Relationships", Section 3 and the authors' code).

The training objective is ``sum_t lambda_t L_t`` on the step's batch; the weights lambda are meta-parameters,
updated before every step to lower the loss on a meta batch after one virtual step of the model:

    theta'(lambda) = theta - alpha grad_theta sum_t lambda_t L_t(theta)        (virtual step, alpha = current lr;
                                                                                 + weight decay and SGD momentum)
    lambda <- Adam(lambda, grad = d/dlambda sum_t L^meta_t(theta'(lambda)))   (lr ``lr``, 1e-4 as the authors)

The hypergradient is ``-alpha (d^2 / dlambda dtheta sum_t lambda_t L_t) v`` with v = grad_theta' L^meta, taken by
a central finite difference of the training losses as the authors do:

    d/dlambda_t = -alpha (L_t(theta + eps v) - L_t(theta - eps v)) / (2 eps),   eps = 0.01 / |v|.

lambda starts at 0.1 for every task (the authors' ``autol_init``) and is not constrained (their code neither
clips nor normalises it). The meta objective is every task's loss (the paper's multi-task setting, all tasks
primary). The meta batch is drawn from the *training* split, in an order of its own, as in the authors' code (a
second loader over the training set): the validation split stays for early stopping, the test split untouched.
Each replica's eps comes from its own |v|, so a stacked replica takes its solo run's steps.

``loss.weights`` multiply the losses before the method sees them, in the step's objective and the meta objective
alike: there a weight is a task's priority (weight 0 leaves it out). Recorded weights: lambda.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.adam import adam_step
from mtlab.weighting.base import LookAhead, LossMethod, LossOptions, register_method
from mtlab.weighting.jacobian import flatten


class AutoLambdaOptions(LossOptions):
    method: Literal["auto_lambda"] = "auto_lambda"
    lr: float = Field(1e-4, gt=0.0, description="Learning rate of the task weights' Adam (the authors' autol_lr).")
    init: float = Field(0.1, description="Initial weight of every task (the authors' autol_init).")


@register_method
class AutoLambda(LossMethod):
    Options = AutoLambdaOptions
    paper = "Liu, Liu & Davison, TMLR 2022 (arXiv:2202.03091)"
    needs_meta_batch = True
    weights_note: ClassVar[str] = "loss multipliers, and each task's priority in the look-ahead's meta objective"

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        t = len(tasks)
        self.register_buffer("task_weights", torch.full((replicas, t), float(options.init)))  # lambda, (K, T)
        self.register_buffer("moment", torch.zeros(replicas, t))
        self.register_buffer("second_moment", torch.zeros(replicas, t))
        self.register_buffer("steps", torch.zeros(replicas))

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        weights = self.task_weights.to(losses.dtype)
        return (weights * losses).sum(1), weights.detach().clone()

    def look_ahead(self, probe: LookAhead) -> None:
        hypergradient = self.hypergradient(probe)
        with torch.no_grad():
            adam_step(self.task_weights, hypergradient.to(self.task_weights), self.moment, self.second_moment,
                      self.steps, self.options.lr)

    def hypergradient(self, probe: LookAhead) -> Tensor:
        """(K, T) d/dlambda of the meta losses after the virtual step, by the authors' finite difference."""
        weights = self.task_weights  # (K, T), a constant of the virtual step
        step_gradients = probe.gradients((weights * probe.losses("step")).sum())
        with probe.moved(probe.virtual_step(step_gradients)):
            meta = probe.gradients(probe.losses("meta").sum())  # v = grad_theta' sum_t L^meta_t, per replica
        norm = flatten(meta, probe.replicas).norm(dim=1)  # (K,)
        eps = 0.01 / norm.clamp(min=torch.finfo(norm.dtype).tiny)
        with torch.no_grad():
            with probe.moved(probe.per_replica(meta, eps)):
                plus = probe.losses("step")  # (K, T): d/dlambda of sum_t lambda_t L_t(theta + eps v)
            with probe.moved(probe.per_replica(meta, -eps)):
                minus = probe.losses("step")
            hypergradient = -probe.step_size * (plus - minus) / (2 * eps[:, None])
            return torch.where(norm[:, None] > 0, hypergradient, torch.zeros_like(hypergradient))
