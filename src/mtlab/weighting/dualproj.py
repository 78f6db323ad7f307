"""``dualproj``: the mean gradient projected onto the dual cone of the task gradients (Quinton & Rey, 2024, after
Lopez-Paz & Ranzato's GEM, NeurIPS 2017, Eq. 11).

``d = argmin_x |x - g_0|^2  s.t.  x . g_t >= 0 for all t``, with g_0 the mean gradient: the closest update to the
mean that conflicts with no task. In weights: ``v = argmin_{v >= 1/T} v^T G v`` on the regularised Gramian
``G / trace(G) + 1e-4 I``, solved exactly for every replica at once.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method
from mtlab.weighting.solvers import project_to_dual_cone
from mtlab.weighting.upgrad import regularised


class DualprojOptions(GradientOptions):
    method: Literal["dualproj"] = "dualproj"


@register_method
class DualProj(GramianMethod):
    Options = DualprojOptions
    paper = "Quinton & Rey, 2024 (arXiv:2406.16232); Lopez-Paz & Ranzato, NeurIPS 2017"
    when_gradients_agree = "mean"
    non_conflicting: ClassVar[dict[str, object] | None] = {}

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        k, t, _ = gramian.shape
        g = regularised(gramian)
        u = torch.full((k, 1, t), 1.0 / t, dtype=g.dtype, device=g.device)
        return project_to_dual_cone(u, g)[:, 0].to(gramian.dtype)
