"""``stch``: smooth Tchebycheff scalarisation (Lin et al., ICML 2024, "Smooth Tchebycheff Scalarization for
Multi-Objective Optimization"), in the form of the authors' multi-task code (STCH_MTL).

The Tchebycheff scalarisation ``max_t lambda_t (f_t - z_t)`` trains the worst-off objective; its smooth form

    g_mu(f) = mu log sum_t exp(lambda_t (f_t - z_t) / mu)

is differentiable and tends to it as mu -> 0. For multi-task learning the objectives are the log-losses and the
reference point is each task's loss at the end of a warm-up (the authors' "nadir vector"): ``f_t - z_t =
log(L_t / N_t)``, ``lambda_t = 1``, and the objective is scaled by T as theirs is:

    warm-up (epochs 1 .. ``warmup_epochs``):   L = sum_t log L_t,
    then:                                     L = T mu log sum_t exp(log(L_t / N_t) / mu),

where N_t is task t's mean training loss over the last warm-up epoch (the authors' ``STCH_warmup_epoch = 4`` counts
epochs from 0 and averages over epoch 4, so five epochs of warm-up: the default here). Task t's gradient weight is
``1 / L_t`` in the warm-up and ``T softmax_t(log(L / N) / mu) / L_t`` after it, which is what is recorded. Defaults
are the authors': mu = 1. A run shorter than the warm-up trains on the log-sum alone.

Both phases are invariant to each loss's scale (log(c L) = log c + log L; N_t scales with L_t), so ``loss.weights``
are refused (TorchJD's ``STCH`` takes preferences lambda, but on log-normalised losses that fall below 0 a larger
lambda_t would *lower* task t's share, so the authors' lambda = 1 is kept). A task of weight 0 is left out.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import LossMethod, LossOptions, register_method

_EPS = 1e-20  # the authors' guard inside each log


class StchOptions(LossOptions):
    method: Literal["stch"] = "stch"
    mu: float = Field(1.0, gt=0.0, description="Smoothing: smaller is closer to the maximum of the log-losses.")
    warmup_epochs: int = Field(
        5, ge=1, description="Epochs on the sum of log-losses before the nadir is fixed (the last one's mean loss)."
    )
    weights_refused: ClassVar[str] = (
        "is invariant to the scale of each task's loss (it balances log(L_t / N_t), N_t the loss at the end of the "
        "warm-up)"
    )


@register_method
class SmoothTchebycheff(LossMethod):
    Options = StchOptions
    paper = "Lin et al., ICML 2024 (arXiv:2402.19078)"

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        self.register_buffer("epochs_seen", torch.zeros(replicas))
        self.register_buffer("nadir", torch.ones(replicas, len(tasks)))  # N, (K, T): fixed after the warm-up

    def _kept(self, device) -> Tensor:
        """(T,) True for the tasks in training (loss.weights of 0 leave one out)."""
        return torch.tensor([self.options.weights.get(t, 1.0) > 0 for t in self.tasks], device=device)

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        kept = self._kept(losses.device)
        count = int(kept.sum())  # T of the tasks in training
        logs = torch.where(kept, losses + _EPS, torch.ones_like(losses)).log()  # (K, T); 0 for a left-out task
        warm_up = (self.epochs_seen < self.options.warmup_epochs)[:, None]  # (K, 1)
        log_sum = logs.sum(1)  # (K,)
        mu = self.options.mu
        normalised = (logs - self.nadir.to(logs).log()) / mu  # log(L_t / N_t) / mu, (K, T)
        normalised = normalised.masked_fill(~kept, -torch.inf)
        tchebycheff = count * mu * torch.logsumexp(normalised, dim=1)  # (K,)
        objective = torch.where(warm_up[:, 0], log_sum, tchebycheff)
        share = torch.where(warm_up, torch.ones_like(losses), count * torch.softmax(normalised, dim=1))
        weights = torch.where(kept, share / (losses + _EPS), torch.zeros_like(losses))  # dL / dL_t, (K, T)
        return objective, weights.detach()

    @torch.no_grad()
    def after_epoch(self, losses: Tensor) -> None:
        self.epochs_seen += 1
        last_warm_up = (self.epochs_seen == self.options.warmup_epochs)[:, None]  # (K, 1)
        self.nadir.copy_(torch.where(last_warm_up, losses.to(self.nadir), self.nadir))
