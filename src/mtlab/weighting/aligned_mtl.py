"""``aligned_mtl``: independent component alignment (Senushkin et al., CVPR 2023, Algorithm 1).

The task gradients are made orthogonal and of equal norm before they are combined, which removes both conflicts and
dominance: with the eigendecomposition of the Gramian ``G = V diag(lambda) V^T`` restricted to its rank R,
``B = sqrt(lambda_scale) V diag(lambda)^-1/2 V^T`` and the update is ``J^T B w`` with w = 1/T: weights ``B w``.
``lambda_scale`` is the smallest non-zero eigenvalue (the paper's choice, ``scale: min``); ``median`` and ``rmse``
(their mean) are the variants of the authors' code. Eigenvalues below ``lambda_max * T * eps`` of the input dtype
count as zero (the rank cut-off of TorchJD's port). ``loss.gradients: representation`` is the paper's
Aligned-MTL-UB: the same alignment of the gradients of the shared representation (one backward pass through the
trunk, as MGDA-UB).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method


class AlignedMtlOptions(GradientOptions):
    method: Literal["aligned_mtl"] = "aligned_mtl"
    scale: Literal["min", "median", "rmse"] = Field("min", description="Which eigenvalue sets the common norm.")


@register_method
class AlignedMTL(GramianMethod):
    Options = AlignedMtlOptions
    paper = "Senushkin et al., CVPR 2023 (arXiv:2305.19000)"

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        k, t, _ = gramian.shape
        eigenvalues, vectors = torch.linalg.eigh(gramian.double())  # ascending, (K, T), (K, T, T)
        eigenvalues, vectors = eigenvalues.flip(-1), vectors.flip(-1)  # descending
        tolerance = eigenvalues[:, :1] * t * torch.finfo(gramian.dtype).eps
        kept = eigenvalues > tolerance  # (K, T); the first R are kept
        rank = kept.sum(-1)  # (K,)
        inverse_sqrt = torch.where(kept, eigenvalues.clamp(min=1e-300).rsqrt(), torch.zeros_like(eigenvalues))
        if self.options.scale == "min":
            scale = torch.where(kept, eigenvalues, torch.inf).min(-1).values
        elif self.options.scale == "rmse":
            scale = (eigenvalues * kept).sum(-1) / rank.clamp(min=1)
        else:  # the lower median of the kept eigenvalues (torch.median's convention)
            index = (rank - 1 - (rank - 1) // 2).clamp(min=0)
            scale = eigenvalues.gather(-1, index[:, None])[:, 0]
        balance = scale.clamp(min=0).sqrt()[:, None, None] * torch.einsum("ktr,kr,ksr->kts", vectors, inverse_sqrt,
                                                                           vectors)
        eye = torch.eye(t, dtype=balance.dtype, device=balance.device).expand(k, t, t)
        balance = torch.where((rank == 0)[:, None, None], eye, balance)  # all gradients zero: B = I
        weights = torch.einsum("kts,ks->kt", balance, torch.full((k, t), 1.0 / t, dtype=balance.dtype,
                                                                 device=balance.device))
        return weights.to(gramian.dtype)
