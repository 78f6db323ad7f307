"""``rlw``: random loss weighting (Lin et al., TMLR 2022, "Reasonable effectiveness of random weighting").

Every step draws ``z ~ N(0, I_T)`` per replica and weights the losses by ``softmax(z)``:
``L = sum_t softmax(z)_t L_t`` (the paper's normal-distribution variant, its recommended default). Draws come from
each replica's own generator, so a stacked replica draws what its solo run draws.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from mtlab.weighting.base import LossMethod, LossOptions, register_method


class RlwOptions(LossOptions):
    method: Literal["rlw"] = "rlw"


@register_method
class RandomLossWeighting(LossMethod):
    Options = RlwOptions
    paper = "Lin et al., TMLR 2022 (arXiv:2111.10603)"

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        z = self.draw(lambda g: torch.randn(losses.shape[1], generator=g))  # (K, T) on the CPU
        weights = torch.softmax(z, dim=1).to(losses.device, losses.dtype)
        return (weights * losses).sum(1), weights
