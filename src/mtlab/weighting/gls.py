"""``gls``: geometric loss strategy (Chennupati et al., CVPR Workshops 2019).

The objective is the geometric mean of the task losses, ``L = (prod_t L_t)^(1/T)``, computed as
``exp(mean_t log L_t)``. Its gradient weights task t by ``L / (T L_t)``: tasks with small losses get large weights,
which is what balances tasks of different scales. Recorded weights: ``L / (T L_t)``.

``loss.weights`` w_t (which, as constant factors of the losses, would only rescale a geometric mean) are its
exponents: the weighted geometric mean ``L = prod_t L_t^(p_t)``, p_t = w_t / sum_s w_s, so that task t's gradient
weight is ``p_t L / L_t`` - the preference multiplies it as it would a weighted sum's. The losses the method sees
are the weighted ones, so uniform weights c scale the objective by c, as they do every method's; a task of weight
0 is left out.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from mtlab.weighting.base import LossMethod, LossOptions, register_method


class GlsOptions(LossOptions):
    method: Literal["gls"] = "gls"


@register_method
class GeometricLoss(LossMethod):
    Options = GlsOptions
    paper = "Chennupati et al., CVPR Workshops 2019 (arXiv:1904.08492)"
    weights_note: ClassVar[str] = "exponents of a weighted geometric mean of the losses"

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        preference = self.loss_weights(losses.device, losses.dtype)
        p = preference / preference.sum()  # (T,); the config refuses all-zero weights
        kept = p > 0
        logs = torch.where(kept, losses, torch.ones_like(losses)).log()  # a left-out task's loss may be 0
        objective = (p * logs).sum(1).exp()  # (K,)
        weights = torch.where(kept, p * objective[:, None] / losses, torch.zeros_like(losses))  # dL/dL_t, (K, T)
        return objective, weights.detach()
