"""``graddrop``: gradient sign dropout (Chen et al., NeurIPS 2020, "Just pick a sign").

Per coordinate of the balanced gradients, the positive sign purity ``P = (1 + sum_t g_t / sum_t |g_t|) / 2`` is
the probability of keeping the positive components: with U ~ Uniform(0, 1) drawn per coordinate,
``M_t = [P > U] [g_t > 0] + [P < U] [g_t < 0]`` and the update is ``sum_t (l_t + (1 - l_t) M_t) g_t``, l the
per-task ``leak`` (default 0, the paper's plain GradDrop). The paper applies it to the gradients of a shared
activation layer: that is ``loss.gradients: representation``; with ``parameters`` it acts on the shared parameters'
gradients (as LibMTL and TorchJD do). The uniforms come from each replica's generator. Recorded weight: the
fraction of each task's gradient coordinates that were kept.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import GradientMethod, GradientOptions, register_method


class GraddropOptions(GradientOptions):
    method: Literal["graddrop"] = "graddrop"
    leak: float = Field(0.0, ge=0.0, le=1.0, description="Fraction of every task's gradient always kept.")


@register_method
class GradDrop(GradientMethod):
    Options = GraddropOptions
    paper = "Chen et al., NeurIPS 2020 (arXiv:2010.06808)"
    task_order = "random"

    def aggregate(self, jacobian: Tensor, gramian: Tensor) -> tuple[Tensor, Tensor]:
        p = jacobian.shape[-1]
        purity = 0.5 * (1 + jacobian.sum(1) / jacobian.abs().sum(1))  # (K, P); NaN where every g_t is 0
        uniform = self.draw(lambda g: torch.rand(p, generator=g, dtype=jacobian.dtype))  # (K, P)
        uniform = uniform.to(jacobian.device)
        keep = ((purity > uniform)[:, None] & (jacobian > 0)) | ((purity < uniform)[:, None] & (jacobian < 0))
        leak = self.options.leak
        update = ((leak + (1 - leak) * keep.to(jacobian.dtype)) * jacobian).sum(1)  # (K, P)
        return update, keep.to(jacobian.dtype).mean(-1)
