"""The MNIST digit-pairs protocol: is the first digit of a pair less than or equal to the second?

Each MNIST image (N, 1, 28, 28) uint8 is average-pooled 2x2 to (N, 1, 14, 14), after scaling to [0, 1] (``unit``,
mtlab's default) or as raw 0-255 values (``raw``: what the course's ``generate_pair_sets`` hands the original study;
the scale changes what Adam's first steps do to the first layer, and so the accuracy). From each split,
``n`` pairs are drawn without reusing an image (a random permutation, first 2n indices, viewed as n pairs), from
the run's seed through two named streams (:mod:`mtlab.seeding`, ``pairs/train`` and ``pairs/test``), so the two
draws are independent yet both reproducible. Targets: ``leq`` = 1 if digit_a <= digit_b else 0, ``digit_a``,
``digit_b``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlab import seeding
from mtlab.data.dataset import Dataset, Split
from mtlab.data.mnist import DIGITS
from mtlab.data.tasks import Task
from mtlab.errors import ConfigError

PAIR_TASKS = {
    "leq": Task("leq", ("a > b", "a <= b")),
    "digit_a": Task("digit_a", DIGITS),
    "digit_b": Task("digit_b", DIGITS),
}


PixelScale = Literal["unit", "raw"]


def pool(images: Tensor, scale: PixelScale = "unit") -> Tensor:
    """(N, 1, 28, 28) uint8 -> (N, 1, 14, 14) float32, the mean of each 2x2 block of pixels / 255 (``unit``, in
    [0, 1]) or of the raw 0-255 values (``raw``)."""
    pixels = images.float()
    return F.avg_pool2d(pixels / 255.0 if scale == "unit" else pixels, kernel_size=2)


def draw_pairs(mnist_split: Split, n: int, generator: torch.Generator, scale: PixelScale = "unit") -> Split:
    """``n`` pairs of distinct MNIST examples of ``mnist_split`` (images (M, 1, 28, 28) uint8, labels ``digit``).

    Returns images (n, 2, 14, 14) float32 - channel 0 is image a, channel 1 image b - and labels ``leq``,
    ``digit_a``, ``digit_b``, each (n,) int64. Only the drawn images are pooled (see :func:`pool` for ``scale``).
    The pairs are stored in the order drawn, which is the training order when ``train.shuffle`` is off.
    """
    if 2 * n > len(mnist_split):
        raise ConfigError(f"data.pairs: {n} pairs need {2 * n} distinct images, the split has {len(mnist_split)}")
    index = torch.randperm(len(mnist_split), generator=generator)[: 2 * n].view(n, 2)  # (n, 2): a, b
    pooled = pool(mnist_split.images[index.flatten()], scale)  # (2n, 1, 14, 14), rows a0, b0, a1, b1, ...
    images = pooled.view(n, 2, *pooled.shape[2:])  # (n, 2, 14, 14)
    digits = mnist_split.labels["digit"]
    digit_a, digit_b = digits[index[:, 0]], digits[index[:, 1]]
    leq = (digit_a <= digit_b).long()
    return Split(images, {"leq": leq, "digit_a": digit_a, "digit_b": digit_b})


def make_pairs(mnist: Dataset, n: int, seed: int, scale: PixelScale = "unit") -> Dataset:
    """The digit-pairs dataset built from ``mnist`` (task ``digit``): ``n`` training and ``n`` test pairs."""
    train = draw_pairs(mnist.train, n, seeding.generator(seed, "pairs/train"), scale)
    test = draw_pairs(mnist.test, n, seeding.generator(seed, "pairs/test"), scale)
    return Dataset("mnist-pairs", dict(PAIR_TASKS), train, test, mnist.origin)
