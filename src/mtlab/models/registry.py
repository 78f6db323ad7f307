"""The two factories of the model layer: a trunk from its options, a network from a run config.

A trunk's or a model kind's options class is the plug-in (one module each, registered in
:data:`~mtlab.config.base.TRUNKS` / :data:`~mtlab.config.base.MODEL_KINDS` with :func:`register_trunk` /
:func:`register_model_kind`); it builds its own network from its own options. These factories only pick the trained
tasks and ask it, so every kind - mtlab's own and a plug-in's - goes through the same path, and the tests
parametrised over the registries (through each plug-in's ``example()``) cover them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from torch import nn

from mtlab.config.base import MODEL_KINDS, TRUNKS, InputShape, TrunkOptions, register_model_kind, register_trunk
from mtlab.models.base import pick_tasks

if TYPE_CHECKING:
    from mtlab.config.schema import RunConfig
    from mtlab.data.tasks import Task
    from mtlab.models.base import MultiTaskNet

__all__ = [
    "MODEL_KINDS", "TRUNKS", "InputShape", "build_model", "create_trunk", "register_model_kind", "register_trunk",
]  # fmt: skip


def create_trunk(config: TrunkOptions, input_shape: InputShape) -> tuple[nn.Module, int]:
    """The trunk ``config`` describes, for inputs of ``input_shape``, and its width F: (B, *input_shape) -> (B, F)."""
    return config.build(tuple(input_shape))


def build_model(config: RunConfig, tasks: Mapping[str, Task], input_shape: InputShape) -> MultiTaskNet:
    """The network ``config.model`` describes, with outputs for ``config.task_names``, in that order.

    ``tasks`` holds every task of the dataset (for output sizes); ``input_shape`` is (C, H, W) of one example.
    Parameters are initialised from torch's global generator: seed it (``torch.manual_seed``) for a repeatable net.
    """
    picked = dict(zip(config.task_names, pick_tasks(tasks, config.task_names), strict=True))  # keyed as ``tasks``
    net = config.model.build(picked, tuple(input_shape))
    epochs = config.train.epochs
    net.start_epoch(epochs, epochs)  # outside a run, a scheduled network (LTB) is in its last epoch's state
    return net
