"""Fixed linear scalarisation: ``L = sum_t w_t * L_t`` with constant weights (``w_t = 1`` unless given).

The weighting of the original studies: fine 2 : coarse 1 (CIFAR-100 hierarchy), lambda * item + (1 - lambda) * group
(Fashion-MNIST), 0.5 * main + 0.5 * mean(aux) (MNIST digit pairs).
"""

from __future__ import annotations

from torch import Tensor

from mtlab.weighting.base import Weighting, register_weighting


@register_weighting("fixed")
class FixedWeighting(Weighting):
    def __init__(self, tasks: list[str], weights: dict[str, float] | None = None):
        super().__init__(tasks)
        weights = weights or {}
        unknown = set(weights) - set(tasks)
        if unknown:
            raise ValueError(f"weights for unknown tasks {sorted(unknown)}")
        self.weights = {t: float(weights.get(t, 1.0)) for t in tasks}

    def combine(self, losses: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        # A task with weight 0 is still evaluated and reported; it just adds nothing to the gradient.
        total = sum(self.weights[t] * losses[t] for t in self.tasks if self.weights[t] != 0.0)
        return total, {}
