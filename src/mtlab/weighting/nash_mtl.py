"""``nash_mtl``: multi-task learning as a bargaining game (Navon et al., ICML 2022).

The update ``d = sum_t alpha_t g_t`` is the Nash bargaining solution: alpha > 0 with ``G alpha = 1 / alpha``
(elementwise; the paper's Theorem 5.1), so that each task's share of the improvement, alpha_t g_t . d = 1, is the
same. The paper solves it with a sequence of convex approximations through cvxpy per step; here a damped Newton
method on the equivalent convex problem (:func:`~mtlab.weighting.solvers.nash_bargaining`) solves it for every
replica at once, on the gradients' correlation matrix (the solution is invariant to each task's scale), until the
Newton decrement shows convergence or after ``newton_steps`` steps. A solve that stops at that cap unconverged is
counted in the state tensor ``unconverged`` (one count per replica, saved with the run's checkpoint under
``weighting``) and reported once per run by a RuntimeWarning (:class:`~mtlab.weighting.solvers.UnconvergedSolves`).
As in the authors' code, the weights are recomputed every ``update_weights_every`` steps (kept in between) and the
update is scaled down to norm ``max_norm`` when it is longer (0 = no limit). Defaults are the authors': max_norm
1.0, update_weights_every 1.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method
from mtlab.weighting.solvers import UnconvergedSolves, nash_bargaining


class NashMtlOptions(GradientOptions):
    method: Literal["nash_mtl"] = "nash_mtl"
    weights_refused: ClassVar[str] = (
        "is invariant to the scale of each task's loss (its bargaining solution gives every task the same share, "
        "alpha_t g_t . d = 1, whatever g_t's scale)"
    )
    max_norm: float = Field(1.0, ge=0.0, description="Longest update (0: no limit).")
    update_weights_every: int = Field(1, gt=0, description="Solve for new weights every this many steps.")
    newton_steps: int = Field(
        200,
        gt=0,
        description="Most damped Newton iterations per solve (it stops at convergence: 5-10 iterations for "
        "gradients of full rank, 40-100 for linearly dependent ones).",
    )


@register_method
class NashMTL(UnconvergedSolves, GramianMethod):
    Options = NashMtlOptions
    paper = "Navon et al., ICML 2022 (arXiv:2202.01017)"
    linear_under_scaling = False  # its weights scale as 1 / |g|: the update does not grow with the gradients

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        self.register_buffer("alpha", torch.ones(replicas, len(tasks), dtype=torch.float64))
        self.register_buffer("steps", torch.zeros(replicas, dtype=torch.long))
        self.track_unconverged(replicas)

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        if int(self.steps[0]) % self.options.update_weights_every == 0:
            alpha, converged = nash_bargaining(gramian, steps=self.options.newton_steps)
            self.alpha.copy_(alpha)
            self.count_unconverged(converged, "the bargaining weights", "loss.newton_steps", self.options.newton_steps)
        self.steps += 1
        alpha = self.alpha
        if self.options.max_norm > 0:
            norm = torch.einsum("kt,kts,ks->k", alpha, gramian.double(), alpha).clamp(min=0).sqrt()  # |d|
            alpha = alpha * (self.options.max_norm / norm.clamp(min=self.options.max_norm))[:, None]
        return alpha.to(gramian.dtype)
