"""Trunk ``imagenet_resnet``: the ImageNet ResNets of He et al. (2016), "Deep Residual Learning for Image
Recognition", CVPR - ResNet-18/34 of basic blocks, ResNet-50/101/152 of bottlenecks - laid out as torchvision's
``torchvision.models.resnet`` so that a torchvision state dict (ImageNet weights a user has as a file) loads.

```yaml
model:
  trunk: {type: imagenet_resnet, depth: 50, output_stride: 8, weights: resnet50-0676ba61.pth}
```

Layout (torchvision's, and its parameter names): ``conv1`` 7x7/2 (no bias) -> ``bn1`` -> ReLU -> 3x3/2 max-pool,
then ``layer1``..``layer4`` of [2, 2, 2, 2] (18), [3, 4, 6, 3] (34, 50), [3, 4, 23, 3] (101) or [3, 8, 36, 3] (152)
blocks with 64, 128, 256, 512 planes (x4 channels out of a bottleneck); the first block of layers 2-4 has stride 2
(in a bottleneck on its 3x3 convolution, "ResNet v1.5") and a ``downsample`` shortcut (1x1 conv + BN) wherever the
shape changes. Convolutions are initialised Kaiming-normal (fan-out, ReLU), batch norms to weight 1 and bias 0, as
torchvision does. The classifier ``fc`` is not part of the trunk: the trunk ends in global average pooling to
(B, 512) or (B, 2048), and a ``weights`` file's ``fc.*`` entries are ignored.

``output_stride`` 8 or 16 replaces the stride of layer3 and layer4 (or layer4) by dilation - torchvision's
``replace_stride_with_dilation`` - which is the "dilated ResNet" (Yu, Koltun & Funkhouser, 2017) LibMTL's
``resnet_dilated(..., dilate_scale=8)`` builds for its NYUv2 and Cityscapes DeepLab models: the first block of a
dilated layer keeps the previous dilation, the others use twice (layer3: 2; layer4: 4 after 2).

Stages (the staged-trunk contract): ``stem`` (conv1, bn1, ReLU, max-pool - registered as one module, so its
parameters are ``stem.conv1.*``, ``stem.bn1.*``; :func:`load_torchvision_state` maps torchvision's ``conv1.*`` /
``bn1.*`` there), ``layer1`` .. ``layer4``.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mtlab.config.base import InputShape, TrunkOptions, register_trunk
from mtlab.errors import ConfigError
from mtlab.models.staged import StagedTrunk, StageInfo

BLOCKS = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3]),
          101: ("bottleneck", [3, 4, 23, 3]), 152: ("bottleneck", [3, 8, 36, 3])}  # fmt: skip
PLANES = [64, 128, 256, 512]


@register_trunk
class ImageNetResNetTrunk(TrunkOptions):
    """A torchvision-layout ResNet (He et al., 2016), optionally dilated, globally average-pooled."""

    type: Literal["imagenet_resnet"]
    depth: Literal[18, 34, 50, 101, 152] = Field(50, description="ResNet-18, 34, 50, 101 or 152.")
    output_stride: Literal[8, 16, 32] = Field(
        32, description="Input size / feature-map size: 32 plain; 16 or 8 dilate layer4 (and layer3) instead."
    )
    weights: Path | None = Field(
        None, description="A torchvision state dict file (.pth), e.g. ImageNet weights; relative to the config file."
    )

    def resolve_paths(self, base: Path) -> None:
        if self.weights is not None and not self.weights.expanduser().is_absolute():
            self.weights = base / self.weights.expanduser()

    def build(self, input_shape: InputShape) -> tuple[StagedTrunk, int]:
        return build_imagenet_resnet(self, input_shape)

    @classmethod
    def example(cls) -> dict[str, Any]:
        return {"type": "imagenet_resnet", "depth": 18}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (the first with ``stride``) and the shortcut; torchvision's names."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        # (B, inplanes, H, W) -> (B, planes, H / stride, W / stride)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 with ``stride`` and ``dilation`` -> 1x1 (expand x4), and the shortcut; torchvision's
    names."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        # (B, inplanes, H, W) -> (B, 4 * planes, H / stride, W / stride)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def make_layer(block: type, inplanes: int, planes: int, blocks: int, stride: int, dilate: bool, dilation: int):
    """One of layer1..4 -> (the layer, channels out, dilation after it): torchvision's ``_make_layer``."""
    previous = dilation
    if dilate:  # the stride becomes dilation, from the second block on
        dilation, stride = dilation * stride, 1
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        out = planes * block.expansion
        downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
    layers = [block(inplanes, planes, stride, downsample, previous)]
    inplanes = planes * block.expansion
    layers += [block(inplanes, planes, 1, None, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers), inplanes, dilation


def _halve(n: int) -> int:
    """Size after a 3x3 (or 7x7) stride-2 convolution or pooling with padding k // 2: ceil(n / 2)."""
    return (n + 1) // 2


def build_resnet_layers(config: ImageNetResNetTrunk, in_channels: int) -> dict[str, nn.Module]:
    """``{"stem": ..., "layer1": ..., ..., "layer4": ...}`` initialised as torchvision initialises them."""
    kind, counts = BLOCKS[config.depth]
    block = BasicBlock if kind == "basic" else Bottleneck
    stem = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False),
            bn1=nn.BatchNorm2d(64),
            relu=nn.ReLU(inplace=True),
            maxpool=nn.MaxPool2d(3, 2, 1),
        )
    )
    dilate = {32: [False] * 3, 16: [False, False, True], 8: [False, True, True]}[config.output_stride]
    layers: dict[str, nn.Module] = {"stem": stem}
    inplanes, dilation = 64, 1
    for i, (planes, blocks) in enumerate(zip(PLANES, counts, strict=True)):
        stride = 1 if i == 0 else 2
        layer, inplanes, dilation = make_layer(
            block, inplanes, planes, blocks, stride, i > 0 and dilate[i - 1], dilation
        )
        layers[f"layer{i + 1}"] = layer
    for layer in layers.values():
        for m in layer.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    return layers


def load_torchvision_state(trunk: nn.Module, path: Path) -> None:
    """Load a torchvision ResNet state dict from ``path`` into ``trunk`` (``fc.*`` dropped, ``conv1.*`` / ``bn1.*``
    read as ``stem.conv1.*`` / ``stem.bn1.*``); a missing file, a missing or extra key or a wrong shape is one
    :class:`ConfigError` at ``model.trunk.weights``."""
    if not path.is_file():
        raise ConfigError(f"model.trunk.weights: {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, or not plain tensors
        raise ConfigError(f"model.trunk.weights: {path} is not a readable torch state dict ({e})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    renamed = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        renamed[f"stem.{key}" if key.split(".")[0] in ("conv1", "bn1") else key] = value
    own = trunk.state_dict()
    missing = [k for k in own if k not in renamed]
    extra = [k for k in renamed if k not in own]
    wrong = [f"{k} {tuple(v.shape)} (trunk: {tuple(own[k].shape)})" for k, v in renamed.items()
             if k in own and v.shape != own[k].shape]  # fmt: skip
    if missing or extra or wrong:
        problems = [f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "",
                    f"shapes differ: {wrong[:2]}" if wrong else ""]  # fmt: skip
        raise ConfigError(
            f"model.trunk.weights: {path} does not fit this ResNet ({'; '.join(p for p in problems if p)}); "
            "give the torchvision weights of the same depth, for 3-channel images"
        )
    trunk.load_state_dict(renamed)


def build_imagenet_resnet(config: ImageNetResNetTrunk, input_shape: InputShape) -> tuple[StagedTrunk, int]:
    """Stages ``stem``, ``layer1``..``layer4``: (B, C, H, W) -> (B, 64, H / 4, W / 4) -> ... -> (B, 512 or 2048,
    H / s, W / s) with s = ``output_stride``, then global average pooling."""
    if len(input_shape) != 3:
        raise ConfigError(f"model.trunk: a ResNet reads images (C, H, W), not inputs of shape {input_shape}")
    channels, height, width = input_shape
    layers = build_resnet_layers(config, channels)
    height, width = _halve(_halve(height)), _halve(_halve(width))  # conv1 /2, max-pool /2
    info = [StageInfo("stem", (64, height, width))]
    expansion = 1 if BLOCKS[config.depth][0] == "basic" else 4
    downsampled = {32: 3, 16: 2, 8: 1}[config.output_stride]  # how many of layer2..4 keep their stride
    for i, planes in enumerate(PLANES):
        if 0 < i <= downsampled:
            height, width = _halve(height), _halve(width)
        info.append(StageInfo(f"layer{i + 1}", (planes * expansion, height, width)))
    reduce = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, C, h, w) -> (B, C)
    trunk = StagedTrunk(layers, info, reduce, input_shape)
    if config.weights is not None:
        load_torchvision_state(trunk, config.weights)
    return trunk, trunk.out_features
