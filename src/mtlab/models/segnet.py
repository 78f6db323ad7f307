"""Model kinds ``segnet`` and ``segnet_mtan``: the SegNet encoder-decoder of the dense-prediction MTL benchmarks.

SegNet (Badrinarayanan, Kendall & Cipolla, 2017) as Liu, Johns & Davison (2019, "End-to-End Multi-Task Learning
with Attention", CVPR) build it in their MTAN repository (``im2im_pred/model_segnet_split.py`` and
``model_segnet_mtan.py``), and as Nash-MTL (Navon et al., 2022) and FAMO (Liu et al., 2023) train it on NYUv2 and
Cityscapes (``experiments/*/models.py``: ``SegNet`` and ``SegNetMtan``, the same layers):

* ``segnet`` - hard sharing ("split" in Liu et al.): the whole encoder-decoder is shared and each task has a head
  of a 3x3 convolution then a 1x1 convolution to its output channels. With one task it is the single-task SegNet
  the papers' baselines are trained with.
* ``segnet_mtan`` - the same encoder-decoder plus, per task, an attention module at every encoder and decoder level
  (1x1 conv, BN, ReLU, 1x1 conv, BN, sigmoid) that masks that level's features; the task's attended features are
  carried from level to level by 3x3 conv blocks shared by all tasks (the paper's f blocks), and the task's head
  reads its last attended decoder features.

For ``filters`` f_0..f_{L-1} (the papers: 64, 128, 256, 512, 512; L = 5) and inputs (B, C, H, W) with H and W
divisible by 2^L, one "conv" is 3x3 conv (padding 1, bias) -> BN -> ReLU, and:

    encoder level l:  e0_l = conv(in), e1_l = convs(e0_l)                   (B, f_l, H / 2^l, W / 2^l)
                      p_l, i_l = maxpool2x2(e1_l)                          (the indices i_l are kept)
    decoder level l:  u_l = unpool(d_{l+1} or p_{L-1}, i_l)                (B, f_l', H / 2^l, W / 2^l)
                      d0_l = conv(u_l) -> f_{l-1} channels (f_0 at l = 0), d1_l = convs(d0_l)

"convs" is one conv at levels 0 and 1 and two at deeper levels. The heads read d1_0 (B, f_0, H, W) and return
(B, outputs, H, W): raw scores - the reference's log-softmax (segmentation) and unit-length scaling (normals) belong
to the task types' losses, which apply them. Attention, for task t (a = attended features):

    encoder:  m = att_t^l([e0_l ; a_{l-1}]), a'_l = m * e1_l, a_l = maxpool2x2(g^l(a'_l))     (g^l: shared conv)
    decoder:  b = h^l(upsample2x(b_{l+1} or a_{L-1})), m = att_t^l([u_l ; b]), b_l = m * d1_l   (h^l: shared conv)

with bilinear upsampling (align_corners=True), as in the reference. Initialisation as the reference: Xavier-normal
convolution weights, zero biases, BN weight 1 and bias 0. The unpooling is a scatter into a zero map at the pooling
indices (what ``nn.MaxUnpool2d`` computes), which ``torch.func.vmap`` batches, so seeds stack.

Shared parameters: the encoder-decoder and the f blocks (every task's loss reaches them); each task's attention
modules and head are its own. Nash-MTL's ``SegNetMtan.shared_parameters()`` returns every parameter outside the
heads, task attention included; a gradient method there therefore also balances the other tasks' zero gradients on
a task's attention (a stated difference: mtlab gives each task's attention its own gradient only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mtlab.config.base import DenseModelKind, ModelExample, TrunkOptions, register_model_kind
from mtlab.errors import ConfigError
from mtlab.models.base import DENSE_TASKS, MultiTaskNet, Part

if TYPE_CHECKING:
    from mtlab.tasks import Task

SHARED = "shared"


@register_model_kind
class SegNetModel(DenseModelKind):
    """SegNet (``segnet``: hard sharing) or SegNet-MTAN (``segnet_mtan``), per-pixel outputs for every task."""

    kind: Literal["segnet", "segnet_mtan"]
    filters: list[Annotated[int, Field(gt=0)]] = Field(
        default_factory=lambda: [64, 128, 256, 512, 512],
        min_length=2,
        description="Channels of each encoder level (the papers: 64, 128, 256, 512, 512); inputs need H and W "
        "divisible by 2^len(filters).",
    )

    @classmethod
    def example(cls) -> ModelExample:
        return ModelExample({"kind": "segnet_mtan", "filters": [4, 8]}, DENSE_TASKS, (3, 16, 16))

    def trunk_configs(self) -> list[TrunkOptions]:
        return []  # not built from an mtlab trunk: nothing for a search to vary or an analysis to hook

    def sharing_label(self) -> str:
        return "segnet-mtan" if self.kind == "segnet_mtan" else "segnet"

    def build(self, tasks: dict[str, Task], input_shape: tuple[int, ...]) -> SegNetNet:
        outputs = {t: task.outputs for t, task in tasks.items()}
        return SegNetNet(self.filters, outputs, tuple(input_shape), attention=self.kind == "segnet_mtan")


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv (padding 1) -> BN -> ReLU: (B, c_in, H, W) -> (B, c_out, H, W)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


def attention_mask(c_in: int, c_out: int) -> nn.Sequential:
    """MTAN's attention module: 1x1 conv -> BN -> ReLU -> 1x1 conv -> BN -> sigmoid, (B, c_in, H, W) -> (B, c_out,
    H, W) in (0, 1)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 1), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 1), nn.BatchNorm2d(c_out), nn.Sigmoid(),
    )  # fmt: skip


def dense_head(channels: int, outputs: int) -> nn.Sequential:
    """The reference's prediction layer: 3x3 conv (channels -> channels) then 1x1 conv to ``outputs``, no BN."""
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.Conv2d(channels, outputs, 1))


def unpool(pooled: Tensor, indices: Tensor, size: torch.Size) -> Tensor:
    """Max-unpooling: ``pooled`` (B, C, h, w) written at its max-pool ``indices`` (flat, per plane) into zeros of
    spatial ``size`` (H, W) -> (B, C, H, W); equal to ``F.max_unpool2d``, as a scatter that vmap batches."""
    b, c = pooled.shape[:2]
    out = pooled.new_zeros(b, c, size[0] * size[1])
    return out.scatter(2, indices.flatten(2), pooled.flatten(2)).view(b, c, *size)


class TaskAttention(nn.Module):
    """One task's attention masks: ``encoder[l]`` and ``decoder[l]`` for every level l."""

    def __init__(self, filters: list[int]):
        super().__init__()
        last = len(filters) - 1
        self.encoder = nn.ModuleList(
            [attention_mask(filters[0], filters[0])]
            + [attention_mask(2 * filters[l], filters[l]) for l in range(1, last + 1)]  # noqa: E741
        )
        # Decoder level l reads [u_l ; b]: u_l has f_l channels (f_{L-1} at the deepest level), b has f_{l-1} (f_0 at
        # level 0; f_{L-1} at the deepest level, where the reference's f_{L-1} + f_{L-2} is the same for its filters).
        decoder = [attention_mask(2 * filters[0], filters[0])]
        decoder += [attention_mask(filters[l] + filters[l - 1], filters[l - 1]) for l in range(1, last)]  # noqa: E741
        decoder.append(attention_mask(2 * filters[last], filters[last - 1]))
        self.decoder = nn.ModuleList(decoder)


class SegNetNet(MultiTaskNet):
    """SegNet's encoder-decoder, optional MTAN attention per task, one dense head per task (see the module)."""

    def __init__(self, filters: list[int], outputs: dict[str, int], input_shape: tuple[int, ...], attention: bool):
        super().__init__(list(outputs))
        levels = len(filters)
        if len(input_shape) != 3 or input_shape[1] % 2**levels or input_shape[2] % 2**levels:
            raise ConfigError(
                f"model.filters: {levels} levels of 2x2 pooling need images whose height and width are divisible by "
                f"{2**levels}, not {tuple(input_shape)}; use fewer filters or resize the images"
            )
        f, last = list(filters), levels - 1
        self.filters = f
        encoder_block = nn.ModuleList([conv_bn_relu(input_shape[0], f[0])])
        encoder_block.extend(conv_bn_relu(f[l - 1], f[l]) for l in range(1, levels))  # noqa: E741
        encoder_conv = nn.ModuleList([conv_bn_relu(f[l], f[l]) for l in range(min(2, levels))])  # noqa: E741
        encoder_conv.extend(
            nn.Sequential(conv_bn_relu(f[l], f[l]), conv_bn_relu(f[l], f[l]))
            for l in range(2, levels)  # noqa: E741
        )
        decoder_block = nn.ModuleList([conv_bn_relu(f[0], f[0])])
        decoder_block.extend(conv_bn_relu(f[l], f[l - 1]) for l in range(1, levels))  # noqa: E741
        decoder_conv = nn.ModuleList([conv_bn_relu(f[0], f[0]) for _ in range(min(2, levels))])
        decoder_conv.extend(
            nn.Sequential(conv_bn_relu(f[l - 1], f[l - 1]), conv_bn_relu(f[l - 1], f[l - 1]))
            for l in range(2, levels)  # noqa: E741
        )
        # Everything every task's loss reaches, under one module path (the shared part).
        self.shared = nn.ModuleDict(
            {"encoder_block": encoder_block, "encoder_conv": encoder_conv,
             "decoder_block": decoder_block, "decoder_conv": decoder_conv}
        )  # fmt: skip
        self.attention = nn.ModuleDict({t: TaskAttention(f) for t in self.task_names} if attention else {})
        if attention:  # the shared f blocks carrying a task's attended features between levels
            encoder_att_block = nn.ModuleList([conv_bn_relu(f[l], f[l + 1]) for l in range(last)])  # noqa: E741
            encoder_att_block.append(conv_bn_relu(f[last], f[last]))
            decoder_att_block = nn.ModuleList([conv_bn_relu(f[0], f[0])])
            decoder_att_block.extend(conv_bn_relu(f[l], f[l - 1]) for l in range(1, last))  # noqa: E741
            decoder_att_block.append(conv_bn_relu(f[last], f[last]))
            self.shared["encoder_att_block"] = encoder_att_block
            self.shared["decoder_att_block"] = decoder_att_block
        self.heads = nn.ModuleDict({t: dense_head(f[0], n) for t, n in outputs.items()})
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def _shared_pass(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """(B, C, H, W) -> per level l: e0_l and e1_l (encoder, l = 0..L-1), u and d1 (decoder, deepest first)."""
        e0, e1, indices = [], [], []
        h = x
        for block, conv in zip(self.shared.encoder_block, self.shared.encoder_conv, strict=True):
            e0.append(block(h))
            e1.append(conv(e0[-1]))
            h, i = F.max_pool2d(e1[-1], 2, 2, return_indices=True)  # (B, f_l, H / 2^(l+1), W / 2^(l+1))
            indices.append(i)
        ups, d1 = [], []
        for level in reversed(range(len(self.filters))):
            u = unpool(h, indices[level], e1[level].shape[-2:])  # (B, channels of h, H / 2^l, W / 2^l)
            h = self.shared.decoder_conv[level](self.shared.decoder_block[level](u))
            ups.append(u)
            d1.append(h)
        return e0, e1, ups, d1

    def _attend(self, attention: TaskAttention, e0, e1, ups, d1) -> Tensor:
        """Task features (B, f_0, H, W): the shared pass masked level by level by ``attention`` (module doc)."""
        a = None
        for level, (mask, g) in enumerate(zip(attention.encoder, self.shared.encoder_att_block, strict=True)):
            m = mask(e0[level] if a is None else torch.cat([e0[level], a], dim=1))
            a = F.max_pool2d(g(m * e1[level]), 2, 2)  # (B, f_{l+1}, H / 2^(l+1), W / 2^(l+1))
        b = a
        levels = len(self.filters)
        for step, level in enumerate(reversed(range(levels))):
            up = F.interpolate(b, scale_factor=2, mode="bilinear", align_corners=True)
            up = self.shared.decoder_att_block[level](up)
            b = attention.decoder[level](torch.cat([ups[step], up], dim=1)) * d1[step]
        return b

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Images (B, C, H, W) -> what the heads read: ``{"shared": (B, f_0, H, W)}`` for SegNet, ``{task: the
        task's attended features (B, f_0, H, W)}`` for SegNet-MTAN."""
        e0, e1, ups, d1 = self._shared_pass(x)
        if not self.attention:
            return {SHARED: d1[-1]}
        return {t: self._attend(self.attention[t], e0, e1, ups, d1) for t in self.task_names}

    def forward_heads(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """``features()`` -> ``{task: (B, outputs_t, H, W)}``."""
        return {t: head(features.get(t, features.get(SHARED))) for t, head in self.heads.items()}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.forward_heads(self.features(x))

    def representation(self) -> tuple[str, str] | None:
        return None if self.attention else (SHARED, SHARED)

    def staged_trunks(self) -> dict[str, nn.Module]:
        return {}  # an encoder-decoder, not a staged trunk; the analysis commands say so

    def parts(self) -> list[Part]:
        parts = [Part(SHARED, self.shared, frozenset(self.task_names))]
        parts += [Part(f"attention.{t}", module, frozenset({t})) for t, module in self.attention.items()]
        parts += [Part(f"heads.{t}", head, frozenset({t})) for t, head in self.heads.items()]
        return parts
