"""The functional form of every gradient-based method, for users and tests: one Jacobian in, one update out."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlab.weighting.base import GradientMethod, method_class, registered_methods
from mtlab.weighting.jacobian import gramian


def gradient_methods() -> list[str]:
    """Names of the registered gradient-based methods."""
    return [name for name in registered_methods() if issubclass(method_class(name), GradientMethod)]


def aggregate(name: str, jacobian: Tensor, *, generator: torch.Generator | None = None, **options) -> Tensor:
    """Combine the task gradients ``jacobian`` (T, P), of any float dtype, into one update (P,) of that dtype.

    ``options`` are the method's own (see ``mtlab weightings``); a method that draws random numbers (PCGrad's task
    orders for T > 2, GradDrop) draws them from ``generator`` (torch's global generator when None). A stateful
    method (GradVac's targets, Nash-MTL's schedule) starts from its initial state.
    """
    cls = method_class(name)
    if not issubclass(cls, GradientMethod):
        raise ValueError(f"{name!r} is a loss-based method; gradient-based ones are {gradient_methods()}")
    if jacobian.dim() != 2 or not jacobian.is_floating_point():
        raise ValueError(f"jacobian must be a (T, P) float tensor, got {tuple(jacobian.shape)} {jacobian.dtype}")
    tasks = [f"task{t}" for t in range(jacobian.shape[0])]
    method = cls(tasks, 1, cls.Options.model_validate({"method": name, **options}), [generator])
    work = jacobian.detach()[None]  # (1, T, P)
    if work.dtype not in (torch.float32, torch.float64):
        work = work.float()  # bf16 / fp16: combine in float32, return in the input's dtype
    update, _ = method.aggregate(work, gramian(work))
    return update[0].to(jacobian.dtype)
