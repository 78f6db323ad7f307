"""Trunk ``resnet``: a small ResNet of basic blocks for low-resolution images (He et al., 2016)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from torch import nn

from mtlab.config.base import InputShape, TrunkOptions, register_trunk
from mtlab.models.layers import BasicBlock
from mtlab.models.staged import StagedTrunk, StageInfo


@register_trunk
class ResNetTrunk(TrunkOptions):
    """A small ResNet of basic blocks (He et al., 2016): a 3x3 stem, then stages of basic blocks.

    Each stage after the first halves the resolution; the output is global-average-pooled to ``widths[-1]`` features.
    """

    type: Literal["resnet"]
    stem: int = Field(64, gt=0)
    widths: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [64, 128, 256], min_length=1)
    blocks: int = Field(1, gt=0, description="Basic blocks per stage.")

    def build(self, input_shape: InputShape) -> tuple[StagedTrunk, int]:
        """He et al. (2016), Sec. 4.2 style: no 7x7 stem, no stem pooling.

        Stages: ``stem`` - 3x3 convolution + BN + ReLU; then ``stages.i``, one per entry of ``widths``, each of
        ``blocks`` basic blocks, the first block of every stage after the first with stride 2; ``reduce`` is global
        average pooling to (B, widths[-1]).
        """
        in_channels, height, width = input_shape
        stem = nn.Sequential(
            nn.Conv2d(in_channels, self.stem, 3, padding=1, bias=False), nn.BatchNorm2d(self.stem), nn.ReLU()
        )
        info = [StageInfo("stem", (self.stem, height, width))]
        stages = []
        channels = self.stem
        for i, out_channels in enumerate(self.widths):
            blocks = []
            for j in range(self.blocks):
                blocks.append(BasicBlock(channels, out_channels, stride=2 if i > 0 and j == 0 else 1))
                channels = out_channels
            if i > 0:
                height, width = (height + 1) // 2, (width + 1) // 2  # a stride-2 3x3 conv with padding 1: ceil(n / 2)
            stages.append(nn.Sequential(*blocks))
            info.append(StageInfo(f"stages.{i}", (channels, height, width)))
        reduce = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, C, H, W) -> (B, C, 1, 1) -> (B, C)
        trunk = StagedTrunk({"stem": stem, "stages": nn.Sequential(*stages)}, info, reduce, input_shape)
        return trunk, trunk.out_features

    def layer_widths(self) -> tuple[list[int], str]:
        return list(self.widths), "-".join(map(str, self.widths))

    @classmethod
    def example(cls) -> dict[str, Any]:
        return {"type": "resnet", "stem": 4, "widths": [4, 8], "blocks": 2}
