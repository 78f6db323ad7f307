"""``imtl``: impartial multi-task learning, the hybrid of its loss and gradient parts (Liu et al., ICLR 2021).

IMTL-L learns a scale s_t per task (initialised at 0) and trains on the scaled loss ``e^(s_t) L_t - s_t``, whose
minimum over s_t is at ``e^(s_t) L_t = 1``: every scaled loss is driven to the same value. IMTL-G
(:mod:`~mtlab.weighting.imtl_g`) then combines the gradients of the scaled losses with weights summing to one
whose update has equal projections on every task's unit gradient:

    g_t = grad (e^(s_t) L_t),   v = G^+ sqrt(diag(G)),   w = v / sum(v),   d = sum_t w_t g_t.

The paper's hybrid (IMTL): task-owned parameters and s take the gradient of the scaled losses, the shared ones the
IMTL-G update. The scaled losses go through the method's ``task_objectives`` hook, so s_t (a parameter of the
method) gets the gradient ``e^(s_t) L_t - 1`` from task t's backward pass. mtlab's optimiser trains s without
weight decay, as it does every method's parameters (:mod:`mtlab.train.optim`). That is not LibMTL's choice: its
``LibMTL/weighting/IMTL.py`` registers the scales as an ``nn.Parameter`` of the model, so its single optimiser
decays them with the model's weight decay (1e-5 by its config default). Recorded weights: ``w_t e^(s_t)``, the
weight of g_t = grad L_t.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from mtlab.weighting.base import register_method
from mtlab.weighting.imtl_g import IMTLG, ImtlGOptions


class ImtlOptions(ImtlGOptions):
    method: Literal["imtl"] = "imtl"  # type: ignore[assignment]
    weights_refused: ClassVar[str] = (
        "is invariant to the scale of each task's loss (its learned scale e^s absorbs any constant factor, and "
        "its gradient part has equal projections on every task's unit gradient)"
    )


@register_method
class IMTL(IMTLG):
    Options = ImtlOptions
    paper = "Liu et al., ICLR 2021 (openreview IMr7-gT4pJz)"

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        self.log_scale = nn.Parameter(torch.zeros(replicas, len(tasks)))  # s (K, T)

    def task_objectives(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        scale = self.log_scale.to(losses.dtype)
        return scale.exp() * losses - scale, scale.detach().exp()
