"""``upgrad``: unconflicting projection of gradients (Quinton & Rey, 2024, "Jacobian descent for multi-objective
optimization").

Each task gradient g_i is projected onto the dual cone of all task gradients, ``{x : x . g_t >= 0 for all t}``,
and the projections are averaged: ``d = (1/T) sum_i pi(g_i)``. The update therefore conflicts with no task
(d . g_t >= 0) and equals the mean where no gradients conflict. In weights (the paper's Proposition 1):
``pi(J^T u) = J^T v`` with ``v = argmin_{v >= u} v^T G v``; the T small QPs of every replica are solved exactly at
once (:func:`~mtlab.weighting.solvers.project_to_dual_cone`) on ``G / trace(G) + 1e-4 I``, the regularised
Gramian TorchJD also uses.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method
from mtlab.weighting.solvers import normalized, project_to_dual_cone, ridge

REGULARISATION = 1e-4


def regularised(gramian: Tensor) -> Tensor:
    """``G / trace(G) + 1e-4 I`` in float64: the Gramian both dual-cone methods project on (TorchJD's default)."""
    return ridge(normalized(gramian.double()), REGULARISATION)


class UpgradOptions(GradientOptions):
    method: Literal["upgrad"] = "upgrad"


@register_method
class UPGrad(GramianMethod):
    Options = UpgradOptions
    paper = "Quinton & Rey, 2024 (arXiv:2406.16232)"
    when_gradients_agree = "mean"
    non_conflicting: ClassVar[dict[str, object] | None] = {}

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        k, t, _ = gramian.shape
        g = regularised(gramian)
        u = torch.eye(t, dtype=g.dtype, device=g.device).expand(k, t, t) / t  # row i: e_i / T
        return project_to_dual_cone(u, g).sum(1).to(gramian.dtype)  # (K, T)
