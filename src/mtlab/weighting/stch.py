"""``stch``: smooth Tchebycheff scalarisation (Lin et al., ICML 2024, "Smooth Tchebycheff Scalarization for
Multi-Objective Optimization"), in the form of the authors' multi-task code (STCH_MTL).

The Tchebycheff scalarisation ``max_t lambda_t (f_t - z_t)`` trains the worst-off objective; its smooth form

    g_mu(f) = mu log sum_t exp(lambda_t (f_t - z_t) / mu)

is differentiable and tends to it as mu -> 0. For multi-task learning the objectives are the log-losses and the
reference point is each task's loss at the end of a warm-up (the authors' "nadir vector"): ``f_t - z_t =
log(L_t / N_t)``, ``lambda_t = 1``, and the objective is scaled by T as theirs is:

    warm-up:   L = sum_t log L_t,
    then:      L = T mu log sum_t exp(log(L_t / N_t) / mu),

where N_t is task t's mean training loss over the last epoch of the warm-up. Task t's gradient weight is ``1 / L_t``
in the warm-up and ``T softmax_t(log(L / N) / mu) / L_t`` after it, which is what is recorded. mu = 1 is the
authors' default.

The warm-up's length: the authors' code counts it in epochs (``STCH_warmup_epoch = 4`` counts from 0 and averages
over epoch 4: five epochs), so a run of five epochs or fewer never leaves it and trains on the sum of log-losses
alone. mtlab measures it as a share of the run instead, ``warmup_fraction`` of its training steps (default 0.1;
at least one step), so that it ends in every run, however short: the warm-up is the first W = round(fraction x
steps) steps, and N_t the mean of task t's training losses over its last min(W, steps per epoch) steps - the last
warm-up epoch, as the authors average, whenever the warm-up spans an epoch or more. ``warmup_epochs`` (the option
of earlier mtlab versions; 5 is the authors' count) sets a whole number of epochs instead, N_t then the last warm-up
epoch's mean training loss; a run with no more epochs than that is refused when its config is validated. The loop
gives the method the run's length before the first step (:meth:`plan`).

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
    warmup_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of the run's training steps on the sum of log-losses before the "
        "nadir is fixed (the mean loss over the warm-up's last epoch of steps); ignored when warmup_epochs is set."
    )
    warmup_epochs: int | None = Field(
        None, ge=1, description="Whole epochs of warm-up instead (the authors' count is 5; the nadir is the last "
        "one's mean loss); the run needs more epochs than this."
    )
    weights_refused: ClassVar[str] = (
        "is invariant to the scale of each task's loss (it balances log(L_t / N_t), N_t the loss at the end of the "
        "warm-up)"
    )

    def run_problem(self, epochs: int) -> tuple[str, str] | None:
        n = self.warmup_epochs
        if n is not None and n >= epochs:
            return "warmup_epochs", (
                f"a warm-up of {n} epochs covers every epoch of this {epochs}-epoch run, so stch would train on the "
                f"sum of log-losses alone; set loss.warmup_epochs below {epochs} or remove it (loss.warmup_fraction, "
                f"default {type(self).model_fields['warmup_fraction'].default}, ends the warm-up within any run)"
            )
        return None


@register_method
class SmoothTchebycheff(LossMethod):
    Options = StchOptions
    paper = "Lin et al., ICML 2024 (arXiv:2402.19078)"

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        self.register_buffer("epochs_seen", torch.zeros(replicas))
        self.register_buffer("nadir", torch.ones(replicas, len(tasks)))  # N, (K, T): fixed after the warm-up
        self.register_buffer("steps_seen", torch.zeros(replicas, dtype=torch.long))
        self.register_buffer("loss_sum", torch.zeros(replicas, len(tasks), dtype=torch.float64))  # towards N
        self.warmup_steps: int | None = None  # W, from plan(); used when warmup_epochs is not set
        self.average_steps = 0  # the steps of the warm-up's end that N averages

    def plan(self, epochs: int, steps_per_epoch: int) -> None:
        total = epochs * steps_per_epoch
        self.warmup_steps = min(max(1, round(self.options.warmup_fraction * total)), total)
        self.average_steps = min(self.warmup_steps, steps_per_epoch)

    def _in_warm_up(self) -> Tensor:
        """(K,) True while replica k is in its warm-up."""
        if self.options.warmup_epochs is not None:
            return self.epochs_seen < self.options.warmup_epochs
        if self.warmup_steps is None:
            raise RuntimeError("stch: loss.warmup_fraction needs the run's length; call method.plan(epochs, "
                               "steps_per_epoch) before the first step, or set loss.warmup_epochs")
        return self.steps_seen < self.warmup_steps

    def _kept(self, device) -> Tensor:
        """(T,) True for the tasks in training (loss.weights of 0 leave one out)."""
        return self.loss_weights(device) > 0

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        kept = self._kept(losses.device)
        count = int(kept.sum())  # T of the tasks in training
        logs = torch.where(kept, losses + _EPS, torch.ones_like(losses)).log()  # (K, T); 0 for a left-out task
        warm_up = self._in_warm_up()[:, None]  # (K, 1)
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
    def after_step(self, losses: Tensor, losses_after: Tensor | None) -> None:
        if self.options.warmup_epochs is not None or self.warmup_steps is None:
            return
        w = self.warmup_steps
        averaged = (self.steps_seen >= w - self.average_steps) & (self.steps_seen < w)  # (K,)
        self.loss_sum += torch.where(averaged[:, None], losses.to(self.loss_sum), 0.0)
        self.steps_seen += 1
        last = (self.steps_seen == w)[:, None]  # (K, 1)
        self.nadir.copy_(torch.where(last, (self.loss_sum / self.average_steps).to(self.nadir), self.nadir))

    @torch.no_grad()
    def after_epoch(self, losses: Tensor) -> None:
        self.epochs_seen += 1
        if self.options.warmup_epochs is None:
            return
        last_warm_up = (self.epochs_seen == self.options.warmup_epochs)[:, None]  # (K, 1)
        self.nadir.copy_(torch.where(last_warm_up, losses.to(self.nadir), self.nadir))
