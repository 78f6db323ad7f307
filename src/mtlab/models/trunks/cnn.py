"""Trunk ``cnn``: convolutions (see :class:`~mtlab.models.layers.ConvLayer`), flatten, then optional dense layers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from torch import nn

from mtlab.config.base import InputShape, TrunkOptions, register_trunk
from mtlab.models.layers import ConvLayer, DenseOptions, conv_output_size, conv_stack, dense_stack
from mtlab.models.staged import StagedTrunk, StageInfo, flat_width
from mtlab.models.trunks.mlp import dense_stages


@register_trunk
class CnnTrunk(DenseOptions, TrunkOptions):
    """Convolutions (see :class:`ConvLayer`), flatten, then optional dense layers."""

    type: Literal["cnn"]
    conv: list[ConvLayer] = Field(
        min_length=1, examples=[[{"filters": 16, "kernel": 3, "pool": 2}, {"filters": 32, "kernel": 3, "pool": 2}]]
    )
    dense: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)

    def build(self, input_shape: InputShape) -> tuple[StagedTrunk, int]:
        """Stages ``conv.i`` (B, C, H, W) -> (B, C_i, H_i, W_i), then ``dense.i`` on the flattened last map."""
        conv, _ = conv_stack(input_shape, self.conv)
        stages, shape = [], input_shape
        for i, layer in enumerate(self.conv):
            shape = (layer.filters, conv_output_size(shape[1], layer), conv_output_size(shape[2], layer))
            stages.append(StageInfo(f"conv.{i}", shape))
        dense, _ = dense_stack(flat_width(shape), self.dense, self.dropout, self.batch_norm)
        layers: dict[str, nn.Module] = {"conv": conv, "dense": dense}
        trunk = StagedTrunk(layers, stages + dense_stages("dense", self.dense), nn.Flatten(), input_shape)
        return trunk, trunk.out_features

    def ends_flat(self) -> bool:
        return bool(self.dense)

    def layer_widths(self) -> tuple[list[int], str]:
        parts = [f"{c.filters}k{c.kernel}" + (f"p{c.pool}" if c.pool > 1 else "") for c in self.conv]
        return [layer.filters for layer in self.conv], "-".join(parts) + "".join(f"-d{w}" for w in self.dense)

    @classmethod
    def example(cls) -> dict[str, Any]:
        return {"type": "cnn", "conv": [{"filters": 4, "pool": 2, "batch_norm": True}, {"filters": 6}], "dense": [8]}
