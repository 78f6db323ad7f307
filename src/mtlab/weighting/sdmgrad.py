"""``sdmgrad``: stochastic direction-oriented multi-objective gradient descent (Xiao, Ban & Ji, NeurIPS 2023).

The update stays within a ball around a preferred direction (here the mean gradient, w~ = 1/T) while improving
every task; its dual is ``min_{w in simplex} |J^T (w + lambda w~)|^2 / 2``, with an unbiased stochastic gradient
from two independent samples, ``J_1 J_2^T (w + lambda w~)``. Per step, ``n_iter`` projected gradient steps with
momentum (``velocity <- momentum velocity + grad``, restarted each step; w kept across steps, 1/T at first) on
``A = J_1 J_2^T / (mean_t sqrt(A_tt))^2`` (the scale normalisation of the paper's Section 6.1 and the authors'
code), then

    d = T J^T (w + lambda w~) / (1 + lambda),   scaled down to norm ``max_norm`` when longer (0 = no limit).

J_1 and J_2 are the Jacobians of the two halves of each batch (the loop splits it for a method declaring
``samples = 2``; ``aggregate`` gets their mean and ``J_1 J_2^T`` in place of the Gramian). The paper's update takes
a third sample's Jacobian; here it is the mean of the two (all the batch's data, as TorchJD's two-batch MoDo
example does). The factor T and the clip are the authors' (OptMN-Lab/sdmgrad, ``methods/weight_methods.py``:
``overwrite_grad`` multiplies the update by the task count, the scale of the summed losses' gradient, then
``backward`` clips the shared parameters' gradient to ``max_norm = 1`` with ``clip_grad_norm_``); TorchJD's
``SDMGradWeighting`` gives the weights (w + lambda w~) / (1 + lambda) alone. Defaults are the authors'
experiments' (lr 10, momentum 0.5, n_iter 20, lambda 0.3 as in TorchJD, max_norm 1). Recorded weights:
T (w + lambda w~) / (1 + lambda), times the clip's factor. State tensors: w.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method
from mtlab.weighting.solvers import project_to_simplex


class SdmgradOptions(GradientOptions):
    method: Literal["sdmgrad"] = "sdmgrad"
    gradients: Literal["parameters"] = Field(
        "parameters", description="Parameters only: each half of the batch has its own representation."
    )
    lam: float = Field(0.3, ge=0.0, description="lambda: pull towards the mean gradient.")
    lr: float = Field(10.0, gt=0.0, description="Step of the inner projected gradient descent on w.")
    momentum: float = Field(0.5, ge=0.0, lt=1.0, description="Momentum of the inner descent.")
    n_iter: int = Field(20, gt=0, description="Inner steps per training step.")
    max_norm: float = Field(1.0, ge=0.0, description="Longest update (0: no limit), the authors' clip.")


@register_method
class SDMGrad(GramianMethod):
    Options = SdmgradOptions
    paper = "Xiao, Ban & Ji, NeurIPS 2023 (arXiv:2305.18409)"
    samples: ClassVar[int] = 2
    linear_under_scaling = False  # the update is clipped to max_norm

    def __init__(self, tasks, replicas, options, generators=None):
        super().__init__(tasks, replicas, options, generators)
        self.register_buffer("w", torch.full((replicas, len(tasks)), 1.0 / len(tasks), dtype=torch.float64))

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        o = self.options
        cross = gramian.double()  # J_1 J_2^T, (K, T, T)
        scale = cross.diagonal(dim1=-2, dim2=-1).clamp(min=0).sqrt().mean(-1)  # (K,)
        a = cross / (scale**2 + 1e-8)[:, None, None]
        preferred = torch.full_like(self.w, 1.0 / self.task_count)  # w~
        w, velocity = self.w.clone(), torch.zeros_like(self.w)
        for i in range(o.n_iter):
            grad = torch.einsum("kts,ks->kt", a, w + o.lam * preferred)
            velocity = grad if i == 0 else o.momentum * velocity + grad
            w = project_to_simplex(w - o.lr * velocity)
        self.w.copy_(w)
        return (self.task_count * (w + o.lam * preferred) / (1 + o.lam)).to(gramian.dtype)  # the authors' x T

    def aggregate(self, jacobian: Tensor, gramian: Tensor) -> tuple[Tensor, Tensor]:
        update, weights = super().aggregate(jacobian, gramian)  # (K, P), (K, T)
        if self.options.max_norm > 0:  # the gramian is J_1 J_2^T here, so |d| is measured on d itself
            norm = update.double().norm(dim=-1)  # (K,)
            factor = (self.options.max_norm / norm.clamp(min=self.options.max_norm)).to(update.dtype)  # (K,)
            update, weights = update * factor[:, None], weights * factor[:, None]
        return update, weights
