"""Model kind ``multi_lenet``: the LeNet of Sener & Koltun's MultiMNIST experiments (NeurIPS 2018, Sec. 6.1).

As their public code builds it (``multi_task/models/multi_lenet.py``: ``MultiLeNetR`` is the shared trunk,
``MultiLeNetO`` one head per task), for inputs (B, 1, H, W) - 28 x 28 in the paper:

    trunk:  conv 10 @ 5x5 -> max-pool 2 -> ReLU                       (B, 10, (H-4)/2, (W-4)/2)
            conv 20 @ 5x5 -> channel mask -> max-pool 2 -> ReLU      (B, 20, 4, 4) at 28 x 28
            flatten -> dense 50 -> ReLU                               (B, 50): the shared representation z
    head:   dense 50 -> ReLU -> unit mask -> dense to the task's classes   (B, classes)

The masks are the authors' hand-made dropout, active in training only and **not rescaled** (the kept activations
are multiplied by 1, not by 1 / keep as ``nn.Dropout`` does; in evaluation nothing is masked):

* the trunk's channel mask is one Bernoulli draw per channel, (1, 20, 1, 1), **shared by every image of the batch**
  (their ``dropout2dwithmask`` draws ``torch.ones(1, C, 1, 1)``), unlike ``nn.Dropout2d``, which draws per image;
* each head's mask is one draw per unit and image, (B, 50).

The heads return raw scores; the authors' ``log_softmax`` followed by ``nll_loss`` is the cross-entropy that the
classification task type computes from them. Parameters keep PyTorch's default initialisation, as in their code.
Their MGDA-UB step draws the masks once per step and reuses them for the gradient computation and the update; here
one forward pass serves both, so the same holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mtlab.config.base import ModelExample, ModelKind, register_model_kind
from mtlab.models.base import TrunkAndHeads, example_task

if TYPE_CHECKING:
    from mtlab.config.base import TrunkOptions
    from mtlab.tasks import Task

TWO_DIGITS = {"left": example_task("left", 10), "right": example_task("right", 10)}
WIDTH = 50
"""Units of the shared representation and of each head's hidden layer (the authors': 50)."""


@register_model_kind
class MultiLeNetModel(ModelKind):
    """Sener & Koltun's MultiMNIST LeNet: a shared LeNet trunk with a per-batch channel mask, a two-layer head per
    task (see :mod:`mtlab.models.multi_lenet`)."""

    kind: Literal["multi_lenet"]
    channel_drop: float = Field(
        0.5, ge=0.0, lt=1.0, description="Probability that a channel of the second convolution is zeroed for the "
        "whole batch (training only, not rescaled; the authors: 0.5)."
    )
    head_drop: float = Field(
        0.5, ge=0.0, lt=1.0, description="Probability that a unit of a head's hidden layer is zeroed, per image "
        "(training only, not rescaled; the authors: 0.5)."
    )

    @classmethod
    def example(cls) -> ModelExample:
        """Two ten-class tasks on 1-channel images of 28 x 28 pixels, as MultiMNIST's."""
        return ModelExample({"kind": "multi_lenet"}, TWO_DIGITS, (1, 28, 28))

    def trunk_configs(self) -> list[TrunkOptions]:
        return []  # a fixed network, not built from an mtlab trunk: nothing for a search to vary

    def dense_only(self) -> bool:
        return False  # a conv net

    def sharing_label(self) -> str:
        return "multi-lenet"

    def build(self, tasks: dict[str, Task], input_shape: tuple[int, ...]) -> MultiLeNet:
        outputs = {t: task.outputs for t, task in tasks.items()}
        return MultiLeNet(outputs, tuple(input_shape), self.channel_drop, self.head_drop)


def batch_channel_mask(x: Tensor, drop: float) -> Tensor:
    """A 0/1 mask (1, C, 1, 1) for ``x`` (B, C, H, W): channel c kept with probability 1 - ``drop``, the same draw
    for every image of the batch (from the global generator, as ``nn.Dropout`` draws)."""
    return (torch.rand(1, x.shape[1], 1, 1, device=x.device) >= drop).to(x.dtype)


class LeNetTrunk(nn.Module):
    """The shared trunk: images (B, 1, H, W) -> z (B, 50); see the module docstring."""

    def __init__(self, input_shape: tuple[int, ...], channel_drop: float):
        super().__init__()
        channels, height, width = input_shape
        if min(height, width) < 16:
            raise ValueError(f"multi_lenet needs images of at least 16 x 16 pixels, got {height} x {width}")
        self.channel_drop = channel_drop
        self.conv1 = nn.Conv2d(channels, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        side = [((s - 4) // 2 - 4) // 2 for s in (height, width)]
        self.fc = nn.Linear(20 * side[0] * side[1], WIDTH)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (B, 10, (H-4)/2, (W-4)/2)
        x = self.conv2(x)  # (B, 20, h, w)
        if self.training and self.channel_drop > 0:
            x = x * batch_channel_mask(x, self.channel_drop)
        x = F.relu(F.max_pool2d(x, 2))  # (B, 20, h/2, w/2)
        return F.relu(self.fc(x.flatten(1)))  # (B, 50)


class LeNetHead(nn.Module):
    """One task's head: z (B, 50) -> dense 50, ReLU, unit mask (training only), dense -> scores (B, outputs)."""

    def __init__(self, outputs: int, drop: float):
        super().__init__()
        self.drop = drop
        self.fc1 = nn.Linear(WIDTH, WIDTH)
        self.fc2 = nn.Linear(WIDTH, outputs)

    def forward(self, z: Tensor) -> Tensor:
        h = F.relu(self.fc1(z))  # (B, 50)
        if self.training and self.drop > 0:
            h = h * (torch.rand_like(h) >= self.drop).to(h.dtype)
        return self.fc2(h)


class MultiLeNet(TrunkAndHeads):
    """The trunk under ``"shared"`` and one :class:`LeNetHead` per task; every head reads the shared z (B, 50)."""

    def __init__(self, outputs: dict[str, int], input_shape: tuple[int, ...], channel_drop: float, head_drop: float):
        super().__init__(
            LeNetTrunk(input_shape, channel_drop), {t: LeNetHead(n, head_drop) for t, n in outputs.items()}
        )
