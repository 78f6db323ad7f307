"""MultiMNIST and its siblings: two images on one canvas, one at the top left and one at the bottom right, and two
tasks - ``left`` classifies the first image, ``right`` the second.

The construction follows Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization" (NeurIPS 2018, Sec. 6.1
and their released loader), with the sizes of Lin et al., "Pareto Multi-Task Learning" (NeurIPS 2019), who added
MultiFashion (two Fashion-MNIST images) and Multi-(Fashion+MNIST) (a Fashion-MNIST item at the top left, an MNIST
digit at the bottom right - the order is ours; the paper does not say which image goes where):

- every image of the source split is the top-left image of ``per_image`` composites; each composite's bottom-right
  image is drawn uniformly at random from the same split (Sener & Koltun: one composite per image, 60,000 train /
  10,000 test; Lin et al. publish 120,000 / 20,000, i.e. two per image - the default here);
- a black ``canvas`` x ``canvas`` canvas (36): the left image's corner at (0, 0), the right image's at (``offset``,
  ``offset``) (6), so the two 28 x 28 images overlap in a 22 x 22 square;
- each image moved by its own random integer shift in [-``shift``, ``shift``] per axis (0 in both papers; Sabour et
  al., NeurIPS 2017, shift their MultiMNIST digits by up to 4 pixels); pixels pushed off the canvas are lost;
- where the images overlap, the brighter pixel wins (pixel-wise maximum, as in Sener & Koltun's loader);
- a nearest-neighbour resize to ``size`` x ``size`` (Sener & Koltun resize to 28; Lin et al.'s files stay 36 x 36 -
  the default). Sener & Koltun's resize (scipy's ``imresize`` of a float canvas) first stretched each canvas's
  intensities to span 0-255 (scipy's ``bytescale``: ``floor((v - min) * 255 / (max - min) + 0.5)``); ``stretch``
  does the same, off by default (the pixels are kept; they differ only where both images peak below 255).

Train composites are drawn only from the source's training split and test composites only from its test split, each
from its own named random stream of the construction seed (:mod:`mtlab.seeding`), so a composite set is a pure
function of (seed, source split, parameters). Everything is whole-tensor work: the only Python loop runs over the
distinct shifts (at most (2 * shift + 1)^2 of them), never over images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from mtlab import seeding
from mtlab.data.dataset import Dataset, Split
from mtlab.data.derived import cached_tensors
from mtlab.data.tasks import Task


@dataclass(frozen=True)
class Geometry:
    """Where the two images go: canvas side, the right image's corner offset, the random shift bound, output side."""

    canvas: int = 36
    offset: int = 6
    shift: int = 0
    size: int = 36


def stretch_to_bytes(canvas: Tensor) -> Tensor:
    """(N, C, H, W) uint8 -> each image's intensities stretched to span 0-255, as scipy's ``bytescale`` does to the
    float canvas that Sener & Koltun's loader hands ``imresize``: ``floor(clip((v - min) * (255 / span)) + 0.5)``,
    span = max - min (1 for a flat image)."""
    x = canvas.double()
    low = x.amin(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    span = x.amax(dim=(1, 2, 3), keepdim=True) - low
    span = torch.where(span == 0, torch.ones_like(span), span)
    return ((x - low) * (255.0 / span)).clamp(0.0, 255.0).add(0.5).to(torch.uint8)  # truncation = floor (>= 0)


def overlay(
    left: Tensor, right: Tensor, geometry: Geometry, generator: torch.Generator, *, stretch: bool = False
) -> Tensor:
    """Compose ``left`` and ``right`` (N, 1, H, W) uint8 into (N, 1, size, size) uint8 composites (``stretch``: each
    canvas stretched to span 0-255 before the resize, see :func:`stretch_to_bytes`).

    Draws two (N, 2) integer shifts from ``generator`` (the left image's first), even when ``shift`` is 0, so the
    stream's use does not depend on the geometry.
    """
    n, channels, height, width = left.shape
    s = geometry.shift
    # A margin of ``s`` on every side keeps every shifted image inside the working canvas; it is cropped at the end.
    side = geometry.canvas + 2 * s
    canvas = torch.zeros(n, channels, side, side, dtype=left.dtype)
    for images, corner in ((left, 0), (right, geometry.offset)):
        moves = torch.randint(0, 2 * s + 1, (n, 2), generator=generator)  # (N, 2): row, column shift + s
        codes = moves[:, 0] * (2 * s + 1) + moves[:, 1]  # (N,): one code per distinct shift
        for code in codes.unique().tolist():
            rows = (codes == code).nonzero().squeeze(1)  # the composites with this shift
            top, start = corner + code // (2 * s + 1), corner + code % (2 * s + 1)
            window = (rows, slice(None), slice(top, top + height), slice(start, start + width))
            canvas[window] = torch.maximum(canvas[window], images[rows])
    canvas = canvas[:, :, s : s + geometry.canvas, s : s + geometry.canvas]
    if stretch:
        canvas = stretch_to_bytes(canvas)
    if geometry.size != geometry.canvas:
        # Nearest neighbour with pixel centres aligned (PIL's NEAREST): output i reads input floor((i + 0.5) * C / S).
        index = ((torch.arange(geometry.size) + 0.5) * geometry.canvas / geometry.size).floor().long()
        canvas = canvas[:, :, index][:, :, :, index]
    return canvas.contiguous()


def compose_split(
    left: Split, right: Split, *, per_image: int, geometry: Geometry, seed: int, stream: str, stretch: bool = False
) -> Split:
    """``per_image * len(left)`` composites of one split: tasks ``left`` and ``right`` from each side's only task.

    ``left`` and ``right`` are the same split of their sources (both training or both test), each with one label
    task. Image i of ``left`` is the top-left image of composites i, i + M, i + 2M, ... (M = ``len(left)``); the
    bottom-right images are drawn uniformly with replacement from ``right`` by the named stream ``stream`` of
    ``seed``, which also draws the shifts.
    """
    generator = seeding.generator(seed, stream)
    n = per_image * len(left)
    left_index = torch.arange(len(left)).repeat(per_image)  # (n,)
    right_index = torch.randint(len(right), (n,), generator=generator)  # (n,)
    images = overlay(left.images[left_index], right.images[right_index], geometry, generator, stretch=stretch)
    (left_labels,), (right_labels,) = left.labels.values(), right.labels.values()
    return Split(images, {"left": left_labels[left_index], "right": right_labels[right_index]})


@dataclass(frozen=True)
class Side:
    """One source of a composite dataset: its name, the digests of its files' content, its task and a loader.

    ``load(prefix)`` returns the ``train`` or ``t10k`` split with one label task; it is called only on a cache miss.
    """

    source: str
    digests: tuple[str, ...]
    task: Task
    origin: str
    load: Callable[[str], Split]


def overlay_dataset(name: str, left: Side, right: Side, config: Any) -> Dataset:
    """Dataset ``name`` built from ``left`` and ``right`` as ``config`` (a ``MultiData``) says, through the cache."""
    geometry = Geometry(config.canvas, config.offset, config.shift, config.size)
    description = {
        "dataset": name,
        "sources": [[side.source, list(side.digests)] for side in (left, right)],
        "per_image": config.per_image,
        "geometry": asdict(geometry),
        "seed": config.construction_seed,
    }
    if config.stretch:  # named only when on, so the cache entries of the sets built before the option stay valid
        description["stretch"] = True

    def build() -> dict[str, Tensor]:
        tensors = {}
        for split, prefix in (("train", "train"), ("test", "t10k")):
            composed = compose_split(
                left.load(prefix),
                right.load(prefix),
                per_image=config.per_image,
                geometry=geometry,
                seed=config.construction_seed,
                stream=f"{name}/{split}",
                stretch=config.stretch,
            )
            tensors[f"{split}.images"] = composed.images
            tensors.update({f"{split}.{task}": y for task, y in composed.labels.items()})
        return tensors

    tensors, _, _ = cached_tensors(name, description, build)
    train, test = (
        Split(tensors[f"{split}.images"], {task: tensors[f"{split}.{task}"] for task in ("left", "right")})
        for split in ("train", "test")
    )
    tasks = {"left": Task("left", left.task.class_names), "right": Task("right", right.task.class_names)}
    origin = left.origin if left.origin == right.origin else f"{left.origin} + {right.origin}"
    return Dataset(name, tasks, train, test, origin)
