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
    """Per-channel affine map from stored inputs to network inputs: ``x * scale + shift``, both (1, C, 1, 1) for
    images (N, C, H, W), (1, D) for feature vectors (N, D) - one statistic per channel or per feature.

    Folds the uint8 -> [0, 1] conversion and standardisation with training-split statistics into one multiply-add.
    """

    scale: Tensor
    shift: Tensor

    @classmethod
    def fit(cls, images: Tensor, standardize: bool = True) -> Normalizer:
        """Statistics from ``images`` (N, C, H, W) or features (N, D), which must be the training split only."""
        to_unit = 1 / 255 if images.dtype == torch.uint8 else 1.0
        c = images.shape[1]
        shape = (1, c) + (1,) * (images.ndim - 2)  # (1, C, 1, 1) or (1, D)
        if not standardize:
            return cls(torch.full(shape, to_unit), torch.zeros(shape))
        reduce = (0, *range(2, images.ndim))  # every dimension but the channel / feature one
        # Accumulate in float64 over chunks: exact enough, and never a float copy of the whole split in memory.
        total = torch.zeros(c, dtype=torch.float64)
        total_sq = torch.zeros(c, dtype=torch.float64)
        for chunk in images.split(8192):
            v = chunk.to(torch.float64) * to_unit
            total += v.sum(reduce)
            total_sq += (v * v).sum(reduce)
        count = images.numel() // c
        mean = total / count
        # A constant channel or feature (std 0) is only centred, never divided by ~0.
        std = (total_sq / count - mean**2).clamp_min(0).sqrt()
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        scale = (to_unit / std).float().view(shape)
        shift = (-mean / std).float().view(shape)
        return cls(scale, shift)

    def to(self, device: torch.device | str) -> Normalizer:
        return Normalizer(self.scale.to(device), self.shift.to(device))

    def __call__(self, images: Tensor) -> Tensor:
        return images.float() * self.scale + self.shift


class ReplicaBatches:
    """Batches for K replicas trained in lockstep, each over its own split (equal lengths) in its own order.

    Yields (inputs (K, B, C, H, W) float32, labels ``{task: (K, B)}``). Replica k draws its permutation and its
    augmentation from ``generators[k]`` exactly as a solo run with that generator would, so replica k sees the
    same batches as the solo run. The splits are stacked once (K, N, ...) so each batch is a single gather.

    The last, partial batch is kept (every example is seen once per epoch), unless it has fewer than
    ``smallest_last`` examples: then it is merged into the batch before it, which is up to ``smallest_last - 1``
    examples larger. The training loop asks for this for a method that splits each batch into samples (double
    sampling: two examples a half, so that batch norm never normalises one image's 1 x 1 map).
    """

    def __init__(
        self,
        splits: list[Split],
        batch_size: int,
        normalizers: list[Normalizer],
        *,
        shuffle: bool = False,
        generators: list[torch.Generator] | None = None,
        crop_padding: int = 0,
        flip: bool = False,
        tasks: list[str] | None = None,
        smallest_last: int = 1,
    ):
        if (shuffle or crop_padding or flip) and generators is None:
            raise ValueError("shuffling or augmenting needs one generator per replica")
        if generators is not None and len(generators) != len(splits):
            raise ValueError(f"{len(generators)} generators for {len(splits)} replicas")
        if len({len(s) for s in splits}) != 1:
            raise ValueError(f"replica splits differ in length: {[len(s) for s in splits]}")
        self.tasks = tasks if tasks is not None else list(splits[0].labels)
        self.length = len(splits[0])
        device = splits[0].images.device
        # (K, N, C, H, W) and (K, N): a view, not a copy, for a single replica.
        self.images = torch.stack([s.images for s in splits]) if len(splits) > 1 else splits[0].images[None]
        self.labels = {
            t: torch.stack([s.labels[t] for s in splits]) if len(splits) > 1 else splits[0].labels[t][None]
            for t in self.tasks
        }
        self.scale = torch.stack([n.scale for n in normalizers]).to(device)  # (K, 1, C, 1, 1) or (K, 1, D)
        self.shift = torch.stack([n.shift for n in normalizers]).to(device)
        self.rows = torch.arange(len(splits), device=device)[:, None]  # (K, 1) replica index for gathers
        self.batch_size = batch_size
        self.smallest_last = smallest_last
        self.shuffle = shuffle
        self.generators = generators
        self.crop_padding = crop_padding
        self.flip = flip

    @property
    def replicas(self) -> int:
        return self.images.shape[0]

    def __len__(self) -> int:
        return len(self._bounds())

    def _bounds(self) -> list[tuple[int, int]]:
        """(start, end) of each batch: ``batch_size`` examples, the last partial one merged into the one before it
        when it is smaller than ``smallest_last``."""
        bounds = [(a, min(a + self.batch_size, self.length)) for a in range(0, self.length, self.batch_size)]
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < self.smallest_last:
            bounds[-2:] = [(bounds[-2][0], self.length)]
        return bounds

    def __iter__(self) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
        device = self.images.device
        order = None
        if self.shuffle:
            order = torch.stack([torch.randperm(self.length, generator=g) for g in self.generators]).to(device)
        for start, end in self._bounds():
            if order is None:
                x = self.images[:, start:end]  # (K, B, C, H, W), a view
                y = {t: v[:, start:end] for t, v in self.labels.items()}
            else:
                index = order[:, start:end]  # (K, B)
                x = self.images[self.rows, index]
                y = {t: v[self.rows, index] for t, v in self.labels.items()}
            x = x.float() * self.scale + self.shift
            if self.crop_padding or self.flip:
                x = torch.stack([self._augment(x[k], g) for k, g in enumerate(self.generators)])
            yield x, y

    def _augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator)
        if self.flip:
            x = horizontal_flip(x, generator)
        return x


class Batches:
    """Batches of one split: (inputs (B, C, H, W) float32, labels ``{task: (B,)}``) - :class:`ReplicaBatches`
    with a single replica.

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
        self.split = split
        self.replica = ReplicaBatches(
            [split],
            batch_size,
            [normalizer],
            shuffle=shuffle,
            generators=None if generator is None else [generator],
            crop_padding=crop_padding,
            flip=flip,
            tasks=tasks,
        )

    def __len__(self) -> int:
        return len(self.replica)

    def __iter__(self) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
        for x, y in self.replica:
            yield x[0], {t: v[0] for t, v in y.items()}
