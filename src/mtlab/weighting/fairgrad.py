"""``fairgrad``: fair resource allocation in multi-task learning (Ban & Ji, ICML 2024, Algorithm 1).

The direction J^T w maximises the alpha-fair utility of the tasks' improvement rates ``g_t . d`` within a ball:
``max_d sum_t u_alpha(g_t . d)`` with ``u_alpha(x) = x^(1 - alpha) / (1 - alpha)`` (log x for alpha = 1). Its
optimality condition (the paper's Eq. 4) is

    G w = w^(-1/alpha)   (elementwise, w > 0),

so every task improves, ``g_t . d = w_t^(-1/alpha) > 0``: alpha = 0 is the plain mean (linear scalarisation), 1
is proportional fairness (the Nash-MTL condition), alpha -> inf tends to max-min fairness. The authors (and TorchJD)
solve it per step with scipy's ``least_squares`` from w = 1/T; here a damped Newton method on the equivalent convex
problem (:func:`~mtlab.weighting.solvers.fair_allocation`) solves it exactly for every replica at once; a solve
that stops at ``newton_steps`` unconverged is counted in the state tensor ``unconverged`` and reported once per run
by a RuntimeWarning, as Nash-MTL's (:class:`~mtlab.weighting.solvers.UnconvergedSolves`; the authors' scipy call
drops its flag). As in the authors' code (OptMN-Lab/fairgrad, ``methods/weight_methods.py``: ``overwrite_grad``
multiplies the update by the task count, the scale of the summed losses' gradient, then ``backward`` clips the
shared parameters' gradient with ``clip_grad_norm_``), the update is

    d = T J^T w,   scaled down to norm ``max_norm`` when longer (0 = no limit),

so the clip engages at the authors' scale for every alpha (at alpha = 1, |J^T w| = sqrt(T) and both forms clip to
the same unit vector). TorchJD's ``FairGrad`` returns J^T w, neither multiplied by T nor clipped. Defaults are the
authors': alpha 1.0, max_norm 1.0. Recorded weights: T w, times the clip's factor.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method
from mtlab.weighting.solvers import UnconvergedSolves, fair_allocation


class FairGradOptions(GradientOptions):
    method: Literal["fairgrad"] = "fairgrad"
    alpha: float = Field(1.0, ge=0.0, description="Fairness: 0 the mean, 1 proportional, large values max-min.")
    max_norm: float = Field(1.0, ge=0.0, description="Longest update (0: no limit).")
    newton_steps: int = Field(100, gt=0, description="Most damped Newton iterations per solve.")


@register_method
class FairGrad(UnconvergedSolves, GramianMethod):
    Options = FairGradOptions
    paper = "Ban & Ji, ICML 2024 (arXiv:2402.15638)"
    linear_under_scaling = False  # w scales as |g|^(-2 alpha / (alpha + 1)): d grows as |g|^((1 - alpha) / (1 + alpha))
    non_conflicting: ClassVar[dict[str, object] | None] = {}

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        self.track_unconverged(replicas)

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        w, converged = fair_allocation(gramian, self.options.alpha, steps=self.options.newton_steps)  # (K, T)
        self.count_unconverged(converged, "the fairness weights", "loss.newton_steps", self.options.newton_steps)
        w = self.task_count * w  # the authors' x T
        if self.options.max_norm > 0:
            norm = (w[:, :, None] * gramian.double() * w[:, None, :]).sum((1, 2)).clamp(min=0).sqrt()  # |d|
            w = w * (self.options.max_norm / norm.clamp(min=self.options.max_norm))[:, None]
        return w.to(gramian.dtype)
