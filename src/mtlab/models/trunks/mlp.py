"""Trunk ``mlp``: flatten, then dense layers of the given widths with ReLU."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from torch import nn

from mtlab.config.base import InputShape, TrunkOptions, register_trunk
from mtlab.models.layers import DenseOptions, dense_stack
from mtlab.models.staged import StagedTrunk, StageInfo, flat_width


def dense_stages(prefix: str, widths: list[int]) -> list[StageInfo]:
    """One stage ``prefix.i`` (B, widths[i]) per dense layer."""
    return [StageInfo(f"{prefix}.{i}", (w,)) for i, w in enumerate(widths)]


@register_trunk
class MlpTrunk(DenseOptions, TrunkOptions):
    """Flatten, then dense layers of the given widths with ReLU."""

    type: Literal["mlp"]
    widths: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)

    def build(self, input_shape: InputShape) -> tuple[StagedTrunk, int]:
        """Stages ``dense.i``: flatten (B, C, H, W) -> (B, C*H*W), then dense blocks of ``widths``."""
        dense, _ = dense_stack(flat_width(input_shape), self.widths, self.dropout, self.batch_norm)
        trunk = StagedTrunk({"dense": dense}, dense_stages("dense", self.widths), nn.Flatten(), input_shape)
        return trunk, trunk.out_features

    def ends_flat(self) -> bool:
        return True

    def reads_vectors(self) -> bool:
        return True

    def dense_only(self) -> bool:
        return True

    def layer_widths(self) -> tuple[list[int], str]:
        return list(self.widths), "-".join(map(str, self.widths)) or "linear"

    @classmethod
    def example(cls) -> dict[str, Any]:
        return {"type": "mlp", "widths": [16, 8], "dropout": 0.1, "batch_norm": True}
