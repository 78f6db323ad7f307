"""Mini-batches straight from whole-split tensors: one index permutation per epoch, then gather, scale, normalise
and augment each batch as a single tensor operation (the layout of airbench's ``CifarLoader``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from mtlab.data.augment import horizontal_flip, random_crop
from mtlab.data.dataset import Split


@dataclass(frozen=True)
class Normalizer:
    """Per-channel affine map from stored pixels to network inputs: ``x * scale + shift``, both (1, C, 1, 1).

    Folds the uint8 -> [0, 1] conversion and standardisation with training-split statistics into one multiply-add.
    """

    scale: Tensor
    shift: Tensor

    @classmethod
    def fit(cls, images: Tensor, standardize: bool = True) -> Normalizer:
        """Statistics from ``images`` (N, C, H, W), which must be the training split only."""
        to_unit = 1 / 255 if images.dtype == torch.uint8 else 1.0
        c = images.shape[1]
        if not standardize:
            return cls(torch.full((1, c, 1, 1), to_unit), torch.zeros(1, c, 1, 1))
        # Accumulate in float64 over chunks: exact enough, and never a float copy of the whole split in memory.
        total = torch.zeros(c, dtype=torch.float64)
        total_sq = torch.zeros(c, dtype=torch.float64)
        for chunk in images.split(8192):
            v = chunk.to(torch.float64) * to_unit
            total += v.sum((0, 2, 3))
            total_sq += (v * v).sum((0, 2, 3))
        count = images.shape[0] * images.shape[2] * images.shape[3]
        mean = total / count
        std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
        scale = (to_unit / std).float().view(1, c, 1, 1)
        shift = (-mean / std).float().view(1, c, 1, 1)
        return cls(scale, shift)

    def to(self, device: torch.device | str) -> Normalizer:
        return Normalizer(self.scale.to(device), self.shift.to(device))

    def __call__(self, images: Tensor) -> Tensor:
        return images.float() * self.scale + self.shift


class Batches:
    """Iterate over a split (already on its device) in batches of (inputs (B, C, H, W) float32, labels per task).

    With ``shuffle`` each pass draws a new permutation from ``generator``; with ``crop_padding`` / ``flip`` each
    batch is augmented as a whole. The last, smaller batch is kept (every example is seen once per epoch).
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        normalizer: Normalizer,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        crop_padding: int = 0,
        flip: bool = False,
        tasks: list[str] | None = None,
    ):
        if (shuffle or crop_padding or flip) and generator is None:
            raise ValueError("shuffling or augmenting needs a generator")
        self.split = split
        self.batch_size = batch_size
        self.normalizer = normalizer.to(split.images.device)
        self.shuffle = shuffle
        self.generator = generator
        self.crop_padding = crop_padding
        self.flip = flip
        self.tasks = tasks if tasks is not None else list(split.labels)

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
        n = len(self.split)
        device = self.split.images.device
        order = torch.randperm(n, generator=self.generator).to(device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                index: Tensor | slice = slice(start, start + self.batch_size)
            else:
                index = order[start : start + self.batch_size]
            x = self.normalizer(self.split.images[index])  # (B, C, H, W) float32
            if self.crop_padding:
                x = random_crop(x, self.crop_padding, self.generator)
            if self.flip:
                x = horizontal_flip(x, self.generator)
            yield x, {t: self.split.labels[t][index] for t in self.tasks}
