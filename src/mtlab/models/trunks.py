"""Trunk builders, registered by the trunk config's ``type``: each maps images (B, C, H, W) to features (B, F).

Every trunk is a :class:`~mtlab.models.staged.StagedTrunk`: named layers (``conv``, ``dense``; ``stem``,
``stages``) that analysis tools reach by name or by type, and the stages soft-sharing models are wired from.
"""

from __future__ import annotations

from torch import nn

from mtlab.config.schema import CnnTrunk, MlpTrunk, ResNetTrunk
from mtlab.models.layers import BasicBlock, conv_output_size, conv_stack, dense_stack
from mtlab.models.registry import InputShape, register_trunk
from mtlab.models.staged import StagedTrunk, StageInfo, flat_width


def _dense_stages(prefix: str, widths: list[int]) -> list[StageInfo]:
    return [StageInfo(f"{prefix}.{i}", (w,)) for i, w in enumerate(widths)]


@register_trunk("mlp")
def build_mlp(config: MlpTrunk, input_shape: InputShape) -> tuple[StagedTrunk, int]:
    """Stages ``dense.i``: flatten (B, C, H, W) -> (B, C*H*W), then dense blocks of ``config.widths``."""
    dense, _ = dense_stack(flat_width(input_shape), config.widths, config.dropout, config.batch_norm)
    trunk = StagedTrunk({"dense": dense}, _dense_stages("dense", config.widths), nn.Flatten(), input_shape)
    return trunk, trunk.out_features


@register_trunk("cnn")
def build_cnn(config: CnnTrunk, input_shape: InputShape) -> tuple[StagedTrunk, int]:
    """Stages ``conv.i`` (B, C, H, W) -> (B, C_i, H_i, W_i), then ``dense.i`` on the flattened last map."""
    conv, _ = conv_stack(input_shape, config.conv)
    stages, shape = [], input_shape
    for i, layer in enumerate(config.conv):
        shape = (layer.filters, conv_output_size(shape[1], layer), conv_output_size(shape[2], layer))
        stages.append(StageInfo(f"conv.{i}", shape))
    dense, _ = dense_stack(flat_width(shape), config.dense, config.dropout, config.batch_norm)
    layers: dict[str, nn.Module] = {"conv": conv, "dense": dense}
    trunk = StagedTrunk(layers, stages + _dense_stages("dense", config.dense), nn.Flatten(), input_shape)
    return trunk, trunk.out_features


@register_trunk("resnet")
def build_resnet(config: ResNetTrunk, input_shape: InputShape) -> tuple[StagedTrunk, int]:
    """A small ResNet for low-resolution images (He et al., 2016, Sec. 4.2 style: no 7x7 stem, no stem pooling).

    Stages: ``stem`` - 3x3 convolution + BN + ReLU; then ``stages.i``, one per entry of ``widths``, each of
    ``blocks`` basic blocks, the first block of every stage after the first with stride 2; ``reduce`` is global
    average pooling to (B, widths[-1]).
    """
    in_channels, height, width = input_shape
    stem = nn.Sequential(
        nn.Conv2d(in_channels, config.stem, 3, padding=1, bias=False), nn.BatchNorm2d(config.stem), nn.ReLU()
    )
    info = [StageInfo("stem", (config.stem, height, width))]
    stages = []
    channels = config.stem
    for i, out_channels in enumerate(config.widths):
        blocks = []
        for j in range(config.blocks):
            blocks.append(BasicBlock(channels, out_channels, stride=2 if i > 0 and j == 0 else 1))
            channels = out_channels
        if i > 0:
            height, width = (height + 1) // 2, (width + 1) // 2  # a stride-2 3x3 conv with padding 1: ceil(n / 2)
        stages.append(nn.Sequential(*blocks))
        info.append(StageInfo(f"stages.{i}", (channels, height, width)))
    reduce = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, C, H, W) -> (B, C, 1, 1) -> (B, C)
    trunk = StagedTrunk({"stem": stem, "stages": nn.Sequential(*stages)}, info, reduce, input_shape)
    return trunk, trunk.out_features
