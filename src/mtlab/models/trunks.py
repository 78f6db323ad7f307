"""Trunk builders, registered by the trunk config's ``type``: each maps images (B, C, H, W) to features (B, F).

Every trunk is an ``nn.Sequential`` with named stages (``conv``, ``flatten``, ``dense``; ``stem``, ``stages``,
``pool``) so analysis tools can reach its convolutions by name or by type.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from mtlab.config.schema import CnnTrunk, MlpTrunk, ResNetTrunk
from mtlab.models.layers import BasicBlock, conv_stack, dense_stack
from mtlab.models.registry import InputShape, register_trunk


@register_trunk("mlp")
def build_mlp(config: MlpTrunk, input_shape: InputShape) -> tuple[nn.Module, int]:
    """Flatten (B, C, H, W) -> (B, C*H*W), then dense blocks of ``config.widths``."""
    channels, height, width = input_shape
    dense, features = dense_stack(channels * height * width, config.widths, config.dropout, config.batch_norm)
    return nn.Sequential(OrderedDict(flatten=nn.Flatten(), dense=dense)), features


@register_trunk("cnn")
def build_cnn(config: CnnTrunk, input_shape: InputShape) -> tuple[nn.Module, int]:
    """Convolution blocks (B, C, H, W) -> (B, C', H', W'), flatten to (B, C'*H'*W'), then dense blocks."""
    conv, (channels, height, width) = conv_stack(input_shape, config.conv)
    dense, features = dense_stack(channels * height * width, config.dense, config.dropout, config.batch_norm)
    return nn.Sequential(OrderedDict(conv=conv, flatten=nn.Flatten(), dense=dense)), features


@register_trunk("resnet")
def build_resnet(config: ResNetTrunk, input_shape: InputShape) -> tuple[nn.Module, int]:
    """A small ResNet for low-resolution images (He et al., 2016, Sec. 4.2 style: no 7x7 stem, no stem pooling).

    3x3 stem convolution + BN + ReLU; then one stage per entry of ``widths``, each of ``blocks`` basic blocks, the
    first block of every stage after the first with stride 2; then global average pooling to (B, widths[-1]).
    """
    in_channels = input_shape[0]
    stem = nn.Sequential(
        nn.Conv2d(in_channels, config.stem, 3, padding=1, bias=False), nn.BatchNorm2d(config.stem), nn.ReLU()
    )
    stages = []
    channels = config.stem
    for i, width in enumerate(config.widths):
        blocks = []
        for j in range(config.blocks):
            blocks.append(BasicBlock(channels, width, stride=2 if i > 0 and j == 0 else 1))
            channels = width
        stages.append(nn.Sequential(*blocks))
    trunk = nn.Sequential(
        OrderedDict(
            stem=stem,
            stages=nn.Sequential(*stages),
            pool=nn.AdaptiveAvgPool2d(1),  # (B, C, H, W) -> (B, C, 1, 1)
            flatten=nn.Flatten(),  # -> (B, C)
        )
    )
    return trunk, channels
