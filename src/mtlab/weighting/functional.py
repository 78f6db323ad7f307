"""The functional form of every gradient-based method, for users and tests: one Jacobian in, one update out."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlab.weighting.base import GradientMethod, method_class, registered_methods
from mtlab.weighting.jacobian import gramian


def gradient_methods() -> list[str]:
    """Names of the registered gradient-based methods."""
    return [name for name in registered_methods() if issubclass(method_class(name), GradientMethod)]


def aggregate(name: str, jacobian: Tensor, *, generator: torch.Generator | None = None, **options: object) -> Tensor:
    """Combine the task gradients ``jacobian`` (T, P), of any float dtype, into one update (P,) of that dtype.

    The functional form of a gradient-based method, for one step: no state carried over (a stateful method -
    GradVac's targets, Nash-MTL's schedule, MoCo's tracked gradients - starts from its initial state each call).
    For a method in a training loop, with its state, use the step object (``docs/own-loop.md``).

    Args:
        name: A gradient-based method (``mtlab weightings``; ``gradient_methods`` lists them).
        jacobian: (T, P): row t is task t's gradient of the shared parameters, flattened.
        generator: Where a method that draws random numbers (PCGrad's task orders for T > 2, GradDrop) draws them;
            torch's global generator when None.
        **options: The method's own options (``c=0.4`` for ``cagrad``).

    Returns:
        The update (P,), in ``jacobian``'s dtype (bf16 and fp16 are combined in float32).

    Raises:
        KeyError: No method of that name.
        ValueError: A loss-based method, a ``jacobian`` that is not a 2-D float tensor, or an invalid option.

    Example:
        ```python
        import torch
        from mtlab import aggregate

        jacobian = torch.tensor([[1.0, 0.0], [-0.5, 1.0]])  # (T=2, P=2): conflicting task gradients
        update = aggregate("upgrad", jacobian)               # (2,): conflicts with neither row
        assert (jacobian @ update >= -1e-6).all()
        ```
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
