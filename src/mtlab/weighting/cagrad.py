"""``cagrad``: conflict-averse gradient descent (Liu et al., NeurIPS 2021).

The update maximises the worst task's improvement within a ball around the mean gradient g_0:
``max_d min_t g_t . d  s.t. |d - g_0| <= c |g_0|``. Its dual over the simplex,
``w = argmin_w  g_w . g_0 + c |g_0| |g_w|`` (g_w = sum_t w_t g_t), gives ``d = g_0 + (c |g_0| / |g_w|) g_w``, and,
as the authors' code does by default, the update is rescaled by ``1 / (1 + c^2)`` (``rescale``). c = 0.5 (the
paper's default for its image experiments). The dual is solved exactly for K replicas at once
(:func:`~mtlab.weighting.solvers.cagrad_simplex`: faces enumerated up to 10 tasks, an active-set method beyond)
instead of one SLSQP call per replica and step.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method
from mtlab.weighting.solvers import cagrad_simplex


class CagradOptions(GradientOptions):
    method: Literal["cagrad"] = "cagrad"
    c: float = Field(0.5, ge=0.0, description="Radius of the ball around the mean gradient, relative to its norm.")
    rescale: bool = Field(True, description="Divide the update by 1 + c^2, as the authors' code does.")


@register_method
class CAGrad(GramianMethod):
    Options = CagradOptions
    paper = "Liu et al., NeurIPS 2021 (arXiv:2110.14048)"
    non_conflicting: ClassVar[dict[str, object] | None] = {"c": 1.0}  # c >= 1 makes d = 0 feasible

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        c = self.options.c
        w, g0, gw = cagrad_simplex(gramian, c)  # (K, T), (K,), (K,)
        t = gramian.shape[-1]
        weights = 1.0 / t + (c * g0 / gw.clamp(min=1e-12))[:, None] * w
        weights = weights.masked_fill((gw < 1e-12)[:, None], 0.0)  # all gradients zero: no update
        if self.options.rescale:
            weights = weights / (1 + c**2)
        return weights.to(gramian.dtype)
