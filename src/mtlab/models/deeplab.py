"""Model kind ``deeplab``: a shared ResNet encoder and one DeepLab head (ASPP) per task, per-pixel outputs.

The network LibMTL (Lin & Zhang, 2023) trains on NYUv2 and Cityscapes (``examples/nyu/main.py``, ``aspp.py``): a
dilated ResNet-50 (output stride 8, :mod:`mtlab.models.imagenet_resnet`, ImageNet weights when the user has the
file) shared by every task, and per task DeepLabv3's head (Chen et al., 2017, "Rethinking Atrous Convolution for
Semantic Image Segmentation"):

    ASPP: [1x1 conv ; 3x3 conv at each of ``rates`` (12, 24, 36) ; image pooling -> 1x1 conv -> upsample]   each
          -> BN -> ReLU, ``channels`` (256) each; concatenated -> 1x1 conv -> BN -> ReLU -> dropout(0.5)
    then  3x3 conv -> BN -> ReLU -> 1x1 conv to the task's outputs                       (B, outputs, H / 8, W / 8)

and the task's scores are upsampled bilinearly (align_corners=True, as LibMTL's ``process_preds``) to the input's
(H, W). Convolutions followed by BN have no bias. Raw scores: the task types' losses apply softmax or unit length.

Shared parameters: the encoder; each head is its task's own. One task gives the single-task model.

The image-pooling branch normalises a 1 x 1 map, so in training a batch needs two or more images (PyTorch's batch
norm refuses one value per channel): choose a batch size that does not leave one image over (LibMTL: batch 8,
``drop_last``; NYUv2's 795 images leave 3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mtlab.config.base import DenseModelKind, ModelExample, TrunkOptions, register_model_kind
from mtlab.models.base import DENSE_TASKS, MultiTaskNet, Part
from mtlab.models.imagenet_resnet import ImageNetResNetTrunk, build_imagenet_resnet

if TYPE_CHECKING:
    from mtlab.tasks import Task

SHARED = "shared"


@register_model_kind
class DeepLabModel(DenseModelKind):
    """A shared (dilated) ResNet encoder and a DeepLabv3 ASPP head per task (LibMTL's NYUv2 / Cityscapes model)."""

    kind: Literal["deeplab"]
    encoder: ImageNetResNetTrunk = Field(
        default_factory=lambda: ImageNetResNetTrunk(type="imagenet_resnet", depth=50, output_stride=8),
        description="The shared encoder (LibMTL: ResNet-50, output stride 8, ImageNet weights).",
    )
    rates: list[Annotated[int, Field(gt=0)]] = Field(
        default_factory=lambda: [12, 24, 36], min_length=1, description="ASPP dilation rates."
    )
    channels: int = Field(256, gt=0, description="Channels of each ASPP branch and of the head.")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="Dropout after the ASPP projection.")

    trunk_field: ClassVar[str] = "encoder"

    def trunk_configs(self) -> list[TrunkOptions]:
        return [self.encoder]

    def sharing_label(self) -> str:
        return "deeplab"

    def build(self, tasks: dict[str, Task], input_shape: tuple[int, ...]) -> DeepLabNet:
        return DeepLabNet(self, {t: task.outputs for t, task in tasks.items()}, tuple(input_shape))

    @classmethod
    def example(cls) -> ModelExample:
        encoder = {"type": "imagenet_resnet", "depth": 18, "output_stride": 8}
        return ModelExample({"kind": "deeplab", "encoder": encoder, "rates": [1, 2], "channels": 8}, DENSE_TASKS,
                            (3, 32, 32))


def conv_bn_relu(c_in: int, c_out: int, kernel: int, dilation: int = 1) -> list[nn.Module]:
    """conv (no bias, 'same' padding) -> BN -> ReLU, as a list of modules."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU()]


class ImagePooling(nn.Module):
    """ASPP's image-level branch: global average pool -> 1x1 conv -> BN -> ReLU, upsampled back to (h, w)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.branch = nn.Sequential(nn.AdaptiveAvgPool2d(1), *conv_bn_relu(c_in, c_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        # (B, c_in, h, w) -> (B, c_out, 1, 1) -> (B, c_out, h, w)
        return F.interpolate(self.branch(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class Aspp(nn.Module):
    """Atrous spatial pyramid pooling: (B, c_in, h, w) -> (B, channels, h, w)."""

    def __init__(self, c_in: int, channels: int, rates: list[int], dropout: float):
        super().__init__()
        branches = [nn.Sequential(*conv_bn_relu(c_in, channels, 1))]
        branches += [nn.Sequential(*conv_bn_relu(c_in, channels, 3, rate)) for rate in rates]
        branches.append(ImagePooling(c_in, channels))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(*conv_bn_relu(len(branches) * channels, channels, 1), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))  # (B, n * channels, h, w)


def deeplab_head(c_in: int, outputs: int, config: DeepLabModel) -> nn.Sequential:
    """ASPP -> 3x3 conv -> BN -> ReLU -> 1x1 conv: (B, c_in, h, w) -> (B, outputs, h, w)."""
    return nn.Sequential(
        Aspp(c_in, config.channels, config.rates, config.dropout),
        *conv_bn_relu(config.channels, config.channels, 3),
        nn.Conv2d(config.channels, outputs, 1),
    )


class DeepLabNet(MultiTaskNet):
    """``encoder`` (a staged ResNet) and ``heads[t]`` (:func:`deeplab_head`)."""

    def __init__(self, config: DeepLabModel, outputs: dict[str, int], input_shape: tuple[int, ...]):
        super().__init__(list(outputs))
        self.input_size = tuple(input_shape[-2:])
        self.encoder, _ = build_imagenet_resnet(config.encoder, input_shape)
        maps = self.encoder.map_shape[0]  # 512 or 2048 channels
        self.heads = nn.ModuleDict({t: deeplab_head(maps, n, config) for t, n in outputs.items()})

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Images (B, C, H, W) -> ``{"shared": the encoder's last map (B, 2048, H / 8, W / 8)}``."""
        return {SHARED: self.encoder.forward_maps(x)}

    def forward_heads(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """-> ``{task: (B, outputs_t, H, W)}``, each head's map upsampled to the input size."""
        shared = features[SHARED]
        return {
            t: F.interpolate(head(shared), size=self.input_size, mode="bilinear", align_corners=True)
            for t, head in self.heads.items()
        }

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.forward_heads(self.features(x))

    def representation(self) -> tuple[str, str] | None:
        return (SHARED, "encoder")

    def staged_trunks(self) -> dict[str, nn.Module]:
        return {SHARED: self.encoder}

    def parts(self) -> list[Part]:
        parts = [Part("encoder", self.encoder, frozenset(self.task_names))]
        return parts + [Part(f"heads.{t}", head, frozenset({t})) for t, head in self.heads.items()]
