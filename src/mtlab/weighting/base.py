"""How per-task losses become one training objective.

A weighting method is composed into the training loop, never mixed into the model (DESIGN.md, after nash-mtl's
``get_weighted_loss`` and TorchJD's aggregators). The loop calls only this interface, so adding a method never
touches the trainer: ``combine`` every step, then ``after_step`` (for methods that update their own state), and
the optimiser also receives ``parameters()`` (for methods that learn weights of their own).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from torch import Tensor, nn

_METHODS: dict[str, Callable[..., Weighting]] = {}


class Weighting(ABC):
    """Turns ``{task: scalar loss}`` into one scalar loss to back-propagate."""

    def __init__(self, tasks: list[str]):
        self.tasks = list(tasks)

    @abstractmethod
    def combine(self, losses: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Return (total loss, extras to log, such as the weights used)."""

    def parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the method learns itself (none by default)."""
        return iter(())

    def after_step(self) -> None:  # noqa: B027  (an optional hook: most methods keep no state)
        """Hook called after each optimiser step (no-op by default)."""


def register_weighting(name: str) -> Callable[[type[Weighting]], type[Weighting]]:
    def add(cls: type[Weighting]) -> type[Weighting]:
        if name in _METHODS:
            raise ValueError(f"weighting {name!r} is registered twice")
        _METHODS[name] = cls
        return cls

    return add


def registered_weightings() -> list[str]:
    return sorted(_METHODS)


def create_weighting(name: str, tasks: list[str], **options: object) -> Weighting:
    """The weighting method registered as ``name``, for ``tasks``, with its own options."""
    if name not in _METHODS:
        raise KeyError(f"unknown weighting {name!r}; known: {registered_weightings()}")
    return _METHODS[name](tasks, **options)
