"""Trunk ``demo_gated``: flatten, then one gated dense layer (B, D) -> (B, width): ``a * sigmoid(b)``.

A trunk is its options class: typed fields, ``build(input_shape)`` returning a staged trunk and its width, what it
answers about itself (``ends_flat``, ``reads_vectors``, ``dense_only``) and a small ``example()``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mtlab.config.base import TrunkOptions, register_trunk
from mtlab.models.staged import StagedTrunk, StageInfo, flat_width


class Gated(nn.Module):
    def __init__(self, features: int, width: int):
        super().__init__()
        self.linear = nn.Linear(features, 2 * width)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.linear(x).chunk(2, dim=-1)  # (B, width) each
        return a * torch.sigmoid(b)


@register_trunk
class DemoGated(TrunkOptions):
    type: Literal["demo_gated"]
    width: int = Field(8, gt=0, description="Features out of the gated layer.")

    def build(self, input_shape):
        stage = Gated(flat_width(input_shape), self.width)
        trunk = StagedTrunk({"gated": stage}, [StageInfo("gated", (self.width,))], nn.Flatten(), input_shape)
        return trunk, trunk.out_features

    def ends_flat(self) -> bool:
        return True

    def reads_vectors(self) -> bool:
        return True

    def dense_only(self) -> bool:
        return True

    @classmethod
    def example(cls):
        return {"type": "demo_gated", "width": 6}
