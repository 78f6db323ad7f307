"""Random task orders for the methods that visit the other tasks in a random order (PCGrad, GradVac)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlab.weighting.base import WeightingMethod


def other_task_orders(method: WeightingMethod, tasks: int) -> Tensor:
    """(K, T, T - 1) long: for each replica and task i, the other tasks in a random order from the replica's own
    generator (no draw at all for two tasks, where there is one order)."""
    others = torch.tensor([[j for j in range(tasks) if j != i] for i in range(tasks)], dtype=torch.long)  # (T, T-1)
    if tasks <= 2:
        return others.expand(method.replicas, -1, -1)
    return method.draw(lambda g: torch.stack([others[i][torch.randperm(tasks - 1, generator=g)] for i in range(tasks)]))
