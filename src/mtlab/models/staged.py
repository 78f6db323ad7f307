"""The staged trunk contract: a trunk is an ordered list of stages, each with a known output shape.

After timm's ``forward_features`` / ``feature_info``: besides mapping images (B, C, H, W) to flat features (B, F), a
:class:`StagedTrunk` names its stages (``conv.0``, ``dense.1``, ``stem``, ``stages.2``: module paths inside the
trunk), says what one example looks like after each (:class:`StageInfo`), and runs one stage at a time
(:meth:`StagedTrunk.run_stage`). Soft-sharing models are wired from it - cross-stitch units mix columns after every
stage, MTAN masks every stage's output, PLE builds a level's experts for the previous level's output - and the
analysis tools find a trunk's convolutions stage by stage.

A trunk's modules keep their plain names (``conv.0.0`` is the first convolution of a CNN trunk), so a stage is a
module path, not a container of its own. Stage ``i`` reads the output of stage ``i - 1`` (the input for stage 0),
flattened first when the stage is dense and its input is a feature map; after the last stage, ``reduce`` (flatten,
or global average pooling then flatten) makes the (B, F) features the heads read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass(frozen=True)
class StageInfo:
    """One stage: its module path ``name`` in the trunk and the ``shape`` of one example's output - (C, H, W) for
    a feature map, (F,) for flat features."""

    name: str
    shape: tuple[int, ...]

    @property
    def is_map(self) -> bool:
        return len(self.shape) == 3


class StagedTrunk(nn.Module):
    """A trunk made of named ``layers`` (registered under their names, so parameter names are the layers' own)
    whose ``stages`` run in order; ``reduce`` maps the last stage's output to features (B, ``out_features``)."""

    def __init__(
        self,
        layers: dict[str, nn.Module],
        stages: list[StageInfo],
        reduce: nn.Module,
        input_shape: tuple[int, int, int],
    ):
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.stage_info = list(stages)
        self.input_shape = tuple(input_shape)
        self.reduce = reduce
        last = self.stage_info[-1].shape if self.stage_info else self.input_shape
        self.map_shape: tuple[int, ...] = last  # one example's output of the last stage, before ``reduce``
        self.out_features = _reduced_width(reduce, last)

    def stage(self, i: int) -> nn.Module:
        """The module of stage ``i``."""
        return self.get_submodule(self.stage_info[i].name)

    def run_stage(self, i: int, h: Tensor) -> Tensor:
        """Stage ``i`` on the previous stage's output ``h`` (B, *shape_{i-1}) -> (B, *shape_i)."""
        if not self.stage_info[i].is_map and h.dim() > 2:
            h = h.flatten(1)  # a dense stage after a feature map reads it flat: (B, C, H, W) -> (B, C*H*W)
        return self.stage(i)(h)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Every stage's output for inputs ``x`` (B, *input_shape), in stage order."""
        outputs = []
        for i in range(len(self.stage_info)):
            x = self.run_stage(i, x)
            outputs.append(x)
        return outputs

    def forward_maps(self, x: Tensor) -> Tensor:
        """The last stage's output (B, *map_shape) - a feature map for a conv trunk - before ``reduce``."""
        for i in range(len(self.stage_info)):
            x = self.run_stage(i, x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        # (B, C, H, W) -> (B, F)
        return self.reduce(self.forward_maps(x))


class TrunkInNetwork(nn.Module):
    """A trunk wired into a bigger network, as analysis sees it: the trunk's layers under their own names
    (``conv.0.0`` ...) and ``stage_info``, and a call that runs the whole network (``features``: inputs (B, C, H, W)
    -> this trunk's (B, F) inside it), so activations hooked on its layers are the ones the network computes.

    For trunks whose stages read what other trunks computed (cross-stitch columns, LTB branches): called alone, such a
    trunk would compute something the network never does."""

    def __init__(self, trunk: StagedTrunk, features: Callable[[Tensor], Tensor]):
        super().__init__()
        for name, layer in trunk.named_children():
            self.add_module(name, layer)
        self.stage_info = trunk.stage_info
        self.__dict__["_features"] = features  # not a submodule: the view must not own (or re-register) the network

    def forward(self, x: Tensor) -> Tensor:
        return self._features(x)


def _reduced_width(reduce: nn.Module, shape: tuple[int, ...]) -> int:
    """F after ``reduce`` for one example of ``shape``: global pooling keeps the channels, flattening keeps all."""
    if any(isinstance(m, nn.AdaptiveAvgPool2d) for m in reduce.modules()):
        return shape[0]
    return flat_width(shape)


def flat_width(shape: tuple[int, ...]) -> int:
    """Values of one example of ``shape`` once flattened."""
    width = 1
    for n in shape:
        width *= n
    return width
