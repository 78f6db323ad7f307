"""``mgda``: the multiple-gradient descent algorithm as multi-objective optimisation (Sener & Koltun, NeurIPS 2018).

The update is the minimum-norm point of the convex hull of the task gradients,
``d = sum_t w_t g_t`` with ``w = argmin_{w in simplex} |sum_t w_t g_t|^2`` (Desideri's MGDA); it is a common
descent direction (d . g_t >= |d|^2 >= 0 for every t). Two tasks: the paper's closed form (Algorithm 1); more:
an exact batched face enumeration up to 10 tasks, Wolfe's active-set method beyond
(:func:`~mtlab.weighting.solvers.min_norm_in_simplex`), instead of the paper's Frank-Wolfe loop; unregularised, so
exact whatever the spread of the gradients' norms. ``loss.gradients: representation`` is the paper's MGDA-UB
(gradients of the shared representation, one backward pass through the trunk).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor

from mtlab.weighting.base import GradientOptions, GramianMethod, register_method
from mtlab.weighting.solvers import min_norm_in_simplex


class MgdaOptions(GradientOptions):
    method: Literal["mgda"] = "mgda"


@register_method
class MGDA(GramianMethod):
    Options = MgdaOptions
    paper = "Sener & Koltun, NeurIPS 2018 (arXiv:1810.04650)"
    when_gradients_agree = "mean"
    non_conflicting: ClassVar[dict[str, object] | None] = {}

    def gramian_weights(self, gramian: Tensor) -> Tensor:
        return min_norm_in_simplex(gramian).to(gramian.dtype)
