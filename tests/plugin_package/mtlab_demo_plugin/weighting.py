"""Weighting method ``demo_softmax``: ``L = sum_t softmax(stopgrad(L) / temperature)_t * T * L_t``."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mtlab.weighting.base import LossMethod, LossOptions, register_method


class DemoSoftmaxOptions(LossOptions):
    method: Literal["demo_softmax"] = "demo_softmax"
    temperature: float = Field(1.0, gt=0.0)


@register_method
class DemoSoftmax(LossMethod):
    Options = DemoSoftmaxOptions
    paper = "a demonstration plug-in (no paper)"

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        weights = torch.softmax(losses.detach() / self.options.temperature, dim=1) * losses.shape[1]  # (K, T)
        return (weights * losses).sum(1), weights
