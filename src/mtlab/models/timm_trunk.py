"""Trunk ``timm``: a standard backbone from the timm library (Wightman, "PyTorch Image Models"), not from our hand.

```yaml
model:
  trunk: {type: timm, name: resnet18, pretrained: false}   # any timm CNN that extracts features by stages
```

The backbone is created with timm's own feature extraction (``timm.create_model(name, features_only=True,
in_chans=C, out_indices=...)``), whose ``feature_info`` names the modules after which each feature level is taken.
mtlab cuts the backbone's modules at those points into stages ``levels.0``, ``levels.1``, ... - the staged-trunk
contract (:mod:`mtlab.models.staged`) - so the soft-sharing kinds (cross-stitch, MTAN, MMoE, PLE) can be wired from
a timm backbone as from mtlab's own trunks. The last stage's feature map is global-average-pooled to (B, C_last).

Pretrained weights never come from the network at run time: ``pretrained: true`` reads the user's hub cache (what
timm finds there already), and ``weights: path/to/file.safetensors`` (or ``.pth``) a local file, relative to the
config file. timm is the extra ``pip install 'mtlab[timm]'``, imported only when a timm trunk is built.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from mtlab.config.base import InputShape, TrunkOptions, register_trunk
from mtlab.errors import ConfigError, MtlabError
from mtlab.models.staged import StagedTrunk, StageInfo


@register_trunk
class TimmTrunk(TrunkOptions):
    """A timm backbone's feature stages, global-average-pooled (``pip install 'mtlab[timm]'``)."""

    type: Literal["timm"]
    name: str = Field(description="timm model name, e.g. resnet18, efficientnet_b0, convnext_atto (timm.list_models).")
    pretrained: bool = Field(False, description="Load pretrained weights from the hub cache or from `weights`.")
    weights: Path | None = Field(None, description="A local weights file (relative to the config file).")
    stages: list[int] | None = Field(
        None, description="timm's out_indices: which feature levels end a stage (default: every level)."
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"{name!r} is not a timm model name (see timm.list_models())")
        return name

    def resolve_paths(self, base: Path) -> None:
        if self.weights is not None and not self.weights.is_absolute():
            self.weights = base / self.weights

    def build(self, input_shape: InputShape) -> tuple[StagedTrunk, int]:
        return build_timm(self, input_shape)

    @classmethod
    def example(cls) -> dict[str, Any]:
        return {"type": "timm", "name": "resnet18"}


def _timm():
    try:
        import timm
    except ImportError as e:
        raise MtlabError(
            f"model.trunk.type timm needs the timm library ({e}); install it with pip install 'mtlab[timm]'"
        ) from None
    return timm


def create_backbone(config: TimmTrunk, in_channels: int) -> nn.Module:
    """timm's feature-extraction wrapper of ``config.name`` (a FeatureListNet for CNNs)."""
    timm = _timm()
    kwargs = {"features_only": True, "in_chans": in_channels}
    if config.stages is not None:
        kwargs["out_indices"] = tuple(config.stages)
    if config.weights is not None:
        if not config.weights.is_file():
            raise ConfigError(f"model.trunk.weights: {config.weights} not found")
        # timm's documented way to load a local file in place of the hub: the pretrained config's file overlay.
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(config.weights)})
    else:
        kwargs["pretrained"] = config.pretrained
    try:
        return timm.create_model(config.name, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e) or "Invalid model" in str(e):
            raise ConfigError(f"model.trunk.name: {e}; see timm.list_models()") from None
        raise


def staged_modules(backbone: nn.Module) -> list[nn.Sequential]:
    """Cut a timm feature extractor (modules in run order, ``return_layers`` naming where each level is taken) into
    one ``nn.Sequential`` per feature level: the modules after the previous level's, through this level's."""
    return_layers = getattr(backbone, "return_layers", None)
    if not isinstance(backbone, nn.ModuleDict) or not return_layers:
        raise ConfigError(
            f"model.trunk.name: timm builds {type(backbone).__name__} for this model, which takes features with hooks; "
            "a timm trunk needs a backbone timm extracts stage by stage (CNNs: resnet*, efficientnet*, convnext*, "
            "regnet*, mobilenet*)"
        )
    stages, current = [], []
    for name, module in backbone.items():
        current.append((name, module))
        if name in return_layers:
            stages.append(nn.Sequential(OrderedDict(current)))
            current = []
    return stages


def build_timm(config: TimmTrunk, input_shape: InputShape) -> tuple[StagedTrunk, int]:
    """Stages ``levels.i`` of a timm backbone: (B, C, H, W) -> (B, C_i, H / r_i, W / r_i), then global average pool."""
    if len(input_shape) != 3:
        raise ConfigError(f"model.trunk: a timm backbone reads images (C, H, W), not inputs of shape {input_shape}")
    stages = staged_modules(create_backbone(config, input_shape[0]))
    # One example's shape after each stage, from a forward pass in eval mode (no batch-norm statistics change).
    shapes, h = [], torch.zeros(1, *input_shape)
    with torch.no_grad():
        modes = [m.training for m in stages]
        for stage in stages:
            stage.eval()
            h = stage(h)
            shapes.append(tuple(int(d) for d in h.shape[1:]))
        for stage, mode in zip(stages, modes, strict=True):
            stage.train(mode)
    layers = {"levels": nn.ModuleList(stages)}
    info = [StageInfo(f"levels.{i}", shape) for i, shape in enumerate(shapes)]
    reduce = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    trunk = StagedTrunk(layers, info, reduce, input_shape)
    return trunk, trunk.out_features
