"""``scale_invariant``: the sum of log-losses, ``L = sum_t log L_t`` - "SI", the scale-invariant baseline of Navon
et al. (ICML 2022, "Multi-Task Learning as a Bargaining Game", Table 2 and the NYUv2 / Cityscapes / QM9 tables that
follow; FAMO's tables carry it too).

Its gradient weights task t by ``1 / L_t``, so multiplying a task's loss by a constant changes nothing: every task
contributes its *relative* change, d log L_t = dL_t / L_t. In the authors' code (AvivNavon/nash-mtl,
``methods/weight_methods.py``, ``ScaleInvariantLinearScalarization``; the same class in OptMN-Lab/fairgrad and
OptMN-Lab/sdmgrad) it is ``sum_t w_t log L_t`` with task weights w that default to 1. Here those are the
``loss.weights``: the losses the method sees are already multiplied by them (which a logarithm would ignore), so
the objective is ``sum_t w_t log(w_t L_t)``, whose gradient weights task t by ``w_t / L_t`` - the authors' form; a
task of weight 0 is left out. It is also what STCH trains during its warm-up. Recorded weights (the derivative by
each weighted loss the method sees, as for every method): ``w_t / (w_t L_t) = 1 / L_t``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from mtlab.weighting.base import LossMethod, LossOptions, register_method


class ScaleInvariantOptions(LossOptions):
    method: Literal["scale_invariant"] = "scale_invariant"


@register_method
class ScaleInvariant(LossMethod):
    Options = ScaleInvariantOptions
    paper = "Navon et al., ICML 2022 (arXiv:2202.01017), Table 2's SI baseline"
    weights_note: ClassVar[str] = "coefficients of the log-losses, as the task weights of the authors' code"

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        w = self.loss_weights(losses.device, losses.dtype)  # (T,)
        kept = w > 0
        logs = torch.where(kept, losses, torch.ones_like(losses)).log()  # (K, T); a left-out task's loss may be 0
        objective = (w * logs).sum(1)  # (K,)
        weights = torch.where(kept, w / losses, torch.zeros_like(losses))  # dL / d(w_t L_t), (K, T)
        return objective, weights.detach()
