"""``config``: conflict-free inverse gradients (ConFIG; Liu, Chu & Thuerey, ICLR 2025, Eq. 2).

The update has the same cosine with every task gradient and the length of the gradients' summed projections on it:

    d_u = U^+ 1 / |U^+ 1|,   d = (sum_t g_t . d_u) d_u,   U = the rows g_t / |g_t|,

U^+ the pseudo-inverse: U^+ 1 is the least-norm x with u_t . x = 1 for all t. In Gramian form, with
D = diag(|g_t|) and C = D^-1 G D^-1 (the gradients' correlations), ``U^+ 1 = J^T v`` with ``v = D^-1 C^+ 1``, so
``d = J^T v (1^T G v) / (v^T G v)``: weights computed from the Gramian alone. A zero gradient has no direction and
is left out of U (as the ``nan_to_num`` of the authors' and TorchJD's code does). For linearly independent
gradients ``u_t . d_u`` is the same positive number for every t, so the update conflicts with no task; for
dependent ones U^+ 1 is a least-squares solution, and that guarantee goes. ``loss.weights`` act as
multipliers of the gradients, so they change the update's length, not its direction.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method


class ConfigOptions(GradientOptions):
    method: Literal["config"] = "config"


@register_method
class ConFIG(GramianMethod):
    Options = ConfigOptions
    paper = "Liu, Chu & Thuerey, ICLR 2025 (arXiv:2408.11104)"
    when_gradients_agree = "sum"
    non_conflicting: ClassVar[dict[str, object] | None] = {}

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        g = gramian.double()
        diag = g.diagonal(dim1=-2, dim2=-1)
        live = diag > 0
        inv = torch.where(live, diag.clamp(min=torch.finfo(torch.float64).tiny).rsqrt(), 0.0)  # 1 / |g_t|, (K, T)
        correlation = g * inv[:, :, None] * inv[:, None, :]  # U U^T
        ones = live.to(g.dtype)
        v = inv * torch.einsum("kts,ks->kt", torch.linalg.pinv(correlation, hermitian=True), ones)  # (K, T)
        norm_sq = torch.einsum("kt,kts,ks->k", v, g, v)  # |U^+ 1|^2
        length = torch.einsum("kts,ks->k", g, v)  # (sum_t g_t) . U^+ 1
        weights = v * (length / norm_sq.clamp(min=1e-300))[:, None]
        return torch.where((norm_sq > 0)[:, None], weights, 0.0).to(gramian.dtype)
