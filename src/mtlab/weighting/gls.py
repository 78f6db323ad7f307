"""``gls``: geometric loss strategy (Chennupati et al., CVPR Workshops 2019).

The objective is the geometric mean of the task losses, ``L = (prod_t L_t)^(1/T)``, computed as
``exp(mean_t log L_t)``. Its gradient weights task t by ``L / (T L_t)``: tasks with small losses get large weights,
which is what balances tasks of different scales. Recorded weights: ``L / (T L_t)``.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from mtlab.weighting.base import LossMethod, LossOptions, register_method


class GlsOptions(LossOptions):
    method: Literal["gls"] = "gls"


@register_method
class GeometricLoss(LossMethod):
    Options = GlsOptions
    paper = "Chennupati et al., CVPR Workshops 2019 (arXiv:1904.08492)"

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        objective = losses.log().mean(1).exp()  # (K,)
        weights = objective[:, None] / (losses.shape[1] * losses)  # dL/dL_t, (K, T)
        return objective, weights.detach()
