"""``imtl_g``: impartial multi-task learning, gradient part (Liu et al., ICLR 2021).

IMTL-G picks the update ``d = sum_t w_t g_t`` (weights summing to one) whose projections on every task's unit
gradient ``u_t = g_t / |g_t|`` are equal: ``d . u_t`` the same for all t. Closed form (the paper's Eq. 9, in the
Gramian form of Quinton & Rey, 2024, which also covers linearly dependent gradients):

    v = G^+ sqrt(diag(G)),   w = v / sum(v)   (w = 0 where sum(v) vanishes).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method


class ImtlGOptions(GradientOptions):
    method: Literal["imtl_g"] = "imtl_g"
    weights_refused: ClassVar[str] = (
        "is invariant to the scale of each task's loss (its update has equal projections on every task's unit "
        "gradient)"
    )


@register_method
class IMTLG(GramianMethod):
    Options = ImtlGOptions
    paper = "Liu et al., ICLR 2021 (openreview IMr7-gT4pJz)"
    when_gradients_agree = "mean"

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        g = gramian.double()
        norms = g.diagonal(dim1=-2, dim2=-1).clamp(min=0).sqrt()  # |g_t|, (K, T)
        v = torch.einsum("kts,ks->kt", torch.linalg.pinv(g, hermitian=True), norms)
        total = v.sum(-1, keepdim=True)
        weights = torch.where(total.abs() < 1e-12, torch.zeros_like(v), v / total)
        return weights.to(gramian.dtype)
