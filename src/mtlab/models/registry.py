"""Name -> builder registries for trunks and models: one decorator to register, one factory to create.

The pattern is timm's (``timm/models/_registry.py``): a module registers its builders on import, the factories look
them up by the config's tag (a trunk's ``type``, a model's ``kind``), and the tests are parametrised over the
registries, so a new builder is tested the day it is added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from torch import nn

from mtlab.registry import Registry

if TYPE_CHECKING:
    from mtlab.config.schema import RunConfig, Trunk
    from mtlab.data.tasks import Task
    from mtlab.models.base import MultiTaskNet

InputShape = tuple[int, ...]
"""Shape of one input example: (C, H, W) for images, (D,) for feature vectors."""


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
    import mtlab.models.builtin  # noqa: F401  (registers the built-in trunks)

    return TRUNKS.get(config.type)(config, input_shape)


def build_model(config: RunConfig, tasks: Mapping[str, Task], input_shape: InputShape) -> MultiTaskNet:
    """Build the network registered under ``config.model.kind``, with outputs for ``config.task_names``.

    ``tasks`` holds every task of the dataset (for output sizes); ``input_shape`` is (C, H, W) of one example.
    Parameters are initialised from torch's global generator: seed it (``torch.manual_seed``) for a repeatable net.
    """
    import mtlab.models.builtin  # noqa: F401  (registers the built-in kinds)

    if config.model.kind in MODELS:
        return MODELS.get(config.model.kind)(config, tasks, input_shape)
    return config.model.build(config, dict(tasks), tuple(input_shape))  # a plug-in kind builds itself
