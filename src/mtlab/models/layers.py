"""Layer stacks the trunks and heads are made of - dense blocks, convolution blocks, residual basic blocks - and
the options of a convolution and of dense layers.

Every block is an ``nn.Sequential`` (or a small module) so that analysis tools can walk ``modules()`` and find the
``nn.Linear`` / ``nn.Conv2d`` layers by type.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator
from torch import Tensor, nn

from mtlab.config.base import Strict
from mtlab.errors import ConfigError


class ConvLayer(Strict):
    """One convolution, then ReLU, then optional max-pool, then optional batch-norm (the order of the reference)."""

    filters: int = Field(gt=0, examples=[16])
    kernel: int = Field(3, gt=0)
    stride: int = Field(1, gt=0)
    padding: Annotated[int, Field(ge=0)] | Literal["same", "valid"] = Field(
        "same", description="Pixels, or 'same' / 'valid'."
    )
    pool: int = Field(1, gt=0, description="Max-pool size (and stride) after the activation; 1 = none.")
    batch_norm: bool = False

    @model_validator(mode="after")
    def _same_needs_stride_one(self) -> ConvLayer:
        if self.padding == "same" and self.stride != 1:
            raise ValueError("padding 'same' needs stride 1; give the padding in pixels")
        return self


class DenseOptions(Strict):
    """Options of the hidden dense layers of an MLP, a CNN's dense tail or a head."""

    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden dense layer.")
    batch_norm: bool = Field(False, description="Batch-norm after each hidden dense layer (after dropout).")


def dense_block(in_features: int, out_features: int, dropout: float, batch_norm: bool) -> nn.Sequential:
    """One hidden layer: Linear -> ReLU -> Dropout (if ``dropout`` > 0) -> BatchNorm1d (if ``batch_norm``)."""
    layers: list[nn.Module] = [nn.Linear(in_features, out_features), nn.ReLU()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    if batch_norm:
        layers.append(nn.BatchNorm1d(out_features))
    return nn.Sequential(*layers)


def dense_stack(in_features: int, widths: list[int], dropout: float, batch_norm: bool) -> tuple[nn.Sequential, int]:
    """Dense blocks of the given widths, (B, in_features) -> (B, F); return the stack and F (the last width, or
    ``in_features`` when ``widths`` is empty)."""
    blocks = []
    for width in widths:
        blocks.append(dense_block(in_features, width, dropout, batch_norm))
        in_features = width
    return nn.Sequential(*blocks), in_features


def conv_block(in_channels: int, layer: ConvLayer) -> nn.Sequential:
    """Conv2d -> ReLU -> MaxPool2d (if ``pool`` > 1) -> BatchNorm2d (if ``batch_norm``), the reference's order."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, layer.filters, layer.kernel, stride=layer.stride, padding=layer.padding),
        nn.ReLU(),
    ]
    if layer.pool > 1:
        layers.append(nn.MaxPool2d(layer.pool))
    if layer.batch_norm:
        layers.append(nn.BatchNorm2d(layer.filters))
    return nn.Sequential(*layers)


def conv_output_size(size: int, layer: ConvLayer) -> int:
    """Height (or width) after ``layer``'s convolution and pooling, for an input ``size`` pixels high (or wide).

    Convolution: floor((size + 2 * padding - kernel) / stride) + 1, 'same' keeps the size (stride is 1 then);
    max-pooling with window = stride = pool then floors size / pool. A result below 1 means no pixels are left.
    """
    if layer.padding == "same":
        out = size
    else:
        padding = 0 if layer.padding == "valid" else layer.padding
        out = (size + 2 * padding - layer.kernel) // layer.stride + 1
    return out // layer.pool


def conv_stack(
    input_shape: tuple[int, int, int], layers: list[ConvLayer]
) -> tuple[nn.Sequential, tuple[int, int, int]]:
    """Convolution blocks (:func:`conv_block`), (B, C, H, W) -> (B, C', H', W'); return the stack and (C', H', W').

    Raises :class:`ConfigError` when a layer would leave no pixels, naming the layer and the size it received.
    """
    channels, height, width = input_shape
    blocks = []
    for i, layer in enumerate(layers):
        out_h, out_w = conv_output_size(height, layer), conv_output_size(width, layer)
        if out_h < 1 or out_w < 1:
            raise ConfigError(
                f"conv[{i}]: kernel {layer.kernel}, stride {layer.stride}, padding {layer.padding!r}, pool "
                f"{layer.pool} leave no pixels of its {height}x{width} input; pad more or pool less"
            )
        blocks.append(conv_block(channels, layer))
        channels, height, width = layer.filters, out_h, out_w
    return nn.Sequential(*blocks), (channels, height, width)


class BasicBlock(nn.Module):
    """The residual basic block of He et al. (2016), "Deep Residual Learning for Image Recognition", Fig. 2 left:

        y = ReLU(BN(conv3x3(ReLU(BN(conv3x3_s(x))))) + shortcut(x))

    where the first convolution has stride ``s`` and the shortcut is the identity when the shape is kept, otherwise a
    strided 1x1 convolution + BN (the paper's projection shortcut, option B). Convolutions followed by batch-norm
    have no bias (BN's shift replaces it).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        # x (B, C_in, H, W) -> (B, C_out, ceil(H / s), ceil(W / s))
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))
