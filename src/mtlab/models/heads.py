"""Task heads: dense hidden layers then a linear layer to class logits, with an optional side input (label reuse)."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from mtlab.models.layers import DenseOptions, dense_block


class Head(DenseOptions):
    """Dense hidden layers of the given widths with ReLU, then a linear layer to the task's classes."""

    widths: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)


class TaskHead(nn.Module):
    """Features (B, F) -> logits (B, num_classes) through ``config.widths`` hidden dense blocks and a linear layer.

    With ``side_features`` > 0 the head also takes a side input (B, side_features) - another task's logits in a
    cascade (:class:`~mtlab.models.cascade.Reuse`) - concatenated to its features after ``join_at`` hidden layers,
    so hidden layer ``join_at`` (or the output layer, if ``join_at == len(widths)``) is ``side_features`` wider.
    """

    def __init__(self, in_features: int, config: Head, num_classes: int, side_features: int = 0, join_at: int = 0):
        super().__init__()
        depth = len(config.widths)
        if side_features and not 0 <= join_at <= depth:
            raise ValueError(f"join_at must be in 0..{depth} (the head's hidden layers), got {join_at}")
        self.join_at: int | None = join_at if side_features else None
        self.side_features = side_features
        blocks = []
        width = in_features
        for i, out_features in enumerate(config.widths):
            if i == self.join_at:
                width += side_features
            blocks.append(dense_block(width, out_features, config.dropout, config.batch_norm))
            width = out_features
        if self.join_at == depth:
            width += side_features
        self.hidden = nn.ModuleList(blocks)
        self.out = nn.Linear(width, num_classes)

    def forward(self, features: Tensor, side: Tensor | None = None) -> Tensor:
        # features (B, F); side (B, S) or None -> logits (B, num_classes)
        if (side is None) != (self.join_at is None):
            raise ValueError("this head takes a side input" if side is None else "this head takes no side input")
        h = features
        for i, block in enumerate(self.hidden):
            if i == self.join_at:
                h = torch.cat([h, side], dim=1)  # (B, width_i + S)
            h = block(h)
        if self.join_at == len(self.hidden):
            h = torch.cat([h, side], dim=1)  # (B, width_last + S)
        return self.out(h)
