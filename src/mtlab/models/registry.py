"""Name -> builder registries for trunks and models: one decorator to register, one factory to create.

The pattern is timm's (``timm/models/_registry.py``): a module registers its builders on import, the factories look
them up by the config's tag (a trunk's ``type``, a model's ``kind``), and the tests are parametrised over the
registries, so a new builder is tested the day it is added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

from torch import nn

if TYPE_CHECKING:
    from mtlab.config.schema import RunConfig, Trunk
    from mtlab.data.tasks import Task
    from mtlab.models.base import MultiTaskNet

BuilderT = TypeVar("BuilderT", bound=Callable[..., object])

InputShape = tuple[int, int, int]
"""(C, H, W) of one input example."""


class Registry(Generic[BuilderT]):
    """Builders by name; ``kind`` ("trunk", "model") only words the error messages."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, BuilderT] = {}

    def register(self, name: str) -> Callable[[BuilderT], BuilderT]:
        """Decorator: make the decorated builder the one for ``name`` (a name can be registered once)."""

        def add(builder: BuilderT) -> BuilderT:
            if name in self._builders:
                raise ValueError(f"a {self.kind} builder is already registered as {name!r}")
            self._builders[name] = builder
            return builder

        return add

    def get(self, name: str) -> BuilderT:
        try:
            return self._builders[name]
        except KeyError:
            raise KeyError(f"no {self.kind} builder registered as {name!r}; known: {self.names()}") from None

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders


TrunkBuilder = Callable[["Trunk", InputShape], tuple[nn.Module, int]]
"""(trunk config, input shape) -> (module mapping (B, C, H, W) to (B, F), F)."""

ModelBuilder = Callable[["RunConfig", Mapping[str, "Task"], InputShape], "MultiTaskNet"]
"""(run config, every task of the dataset, input shape) -> network with heads for ``config.task_names``."""

TRUNKS: Registry[TrunkBuilder] = Registry("trunk")
MODELS: Registry[ModelBuilder] = Registry("model")

register_trunk = TRUNKS.register
register_model = MODELS.register


def create_trunk(config: Trunk, input_shape: InputShape) -> tuple[nn.Module, int]:
    """Build the trunk registered under ``config.type`` for inputs of ``input_shape``; return it and its width F."""
    return TRUNKS.get(config.type)(config, input_shape)


def build_model(config: RunConfig, tasks: Mapping[str, Task], input_shape: InputShape) -> MultiTaskNet:
    """Build the network registered under ``config.model.kind``, with outputs for ``config.task_names``.

    ``tasks`` holds every task of the dataset (for class counts); ``input_shape`` is (C, H, W) of one example.
    Parameters are initialised from torch's global generator: seed it (``torch.manual_seed``) for a repeatable net.
    """
    return MODELS.get(config.model.kind)(config, tasks, input_shape)
