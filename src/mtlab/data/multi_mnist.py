"""``multi-mnist``, ``multi-fashion``, ``multi-fashion-mnist`` and their ``-sample`` variants: two images on one
canvas, tasks ``left`` (the top-left image's class) and ``right`` (the bottom-right one's) - MultiMNIST (Sener &
Koltun, 2018) and its siblings MultiFashion and Multi-(Fashion+MNIST) (Lin et al., 2019).

Built by :mod:`mtlab.data.overlay` from the sources' own train and test splits and cached on disk. The ``-sample``
variants use the samples embedded in the package; without the embedded MNIST sample the variants that need it say
so when loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from mtlab.config.base import DataBase, register_dataset
from mtlab.data.fashion import FASHION_CLASSES
from mtlab.data.mnist import DIGITS, find, idx_split, origin
from mtlab.data.sources import SOURCES, Source
from mtlab.errors import DataError

if TYPE_CHECKING:
    from mtlab.data.dataset import Dataset
    from mtlab.data.overlay import Side

# Dataset -> the sources of its (top-left, bottom-right) images.
OVERLAYS: dict[str, tuple[str, str]] = {
    "multi-mnist": ("mnist", "mnist"),
    "multi-fashion": ("fashion-mnist", "fashion-mnist"),
    "multi-fashion-mnist": ("fashion-mnist", "mnist"),
    "multi-mnist-sample": ("mnist-sample", "mnist-sample"),
    "multi-fashion-sample": ("fashion-mnist-sample", "fashion-mnist-sample"),
    "multi-fashion-mnist-sample": ("fashion-mnist-sample", "mnist-sample"),
}

# The class names of each source the composites are drawn from.
SOURCE_CLASSES = {
    "mnist": DIGITS, "mnist-sample": DIGITS, "fashion-mnist": FASHION_CLASSES, "fashion-mnist-sample": FASHION_CLASSES,
}  # fmt: skip


@register_dataset
class MultiData(DataBase):
    """MultiMNIST (Sener & Koltun, 2018) and its siblings MultiFashion and Multi-(Fashion+MNIST) (Lin et al., 2019):
    two images on one canvas, tasks ``left`` (the top-left image's class) and ``right`` (the bottom-right one's).

    Built by :mod:`mtlab.data.overlay` from the source's own train and test splits and cached on disk; the defaults
    give Lin et al.'s 36 x 36 sets (120,000 / 20,000 from the full sources); ``per_image: 1, size: 28`` gives Sener &
    Koltun's. The ``-sample`` variants are built from the samples embedded in the package.
    """

    dataset: Literal[
        "multi-mnist",
        "multi-fashion",
        "multi-fashion-mnist",
        "multi-mnist-sample",
        "multi-fashion-sample",
        "multi-fashion-mnist-sample",
    ]
    offered_tasks: ClassVar[tuple[str, ...]] = ("left", "right")
    added_options: ClassVar[tuple[str, ...]] = ("stretch",)
    per_image: int = Field(2, gt=0, description="Composites per source image (it is the top-left image of each).")
    canvas: int = Field(36, ge=28, description="Side of the square canvas the two 28x28 images are placed on.")
    offset: int = Field(6, ge=0, description="Row and column of the bottom-right image's corner on the canvas.")
    shift: int = Field(0, ge=0, description="Largest random shift of each image, in pixels, per axis.")
    size: int = Field(36, gt=0, description="Side of the composites after a nearest-neighbour resize of the canvas.")
    construction_seed: int = Field(
        0, ge=0, description="Seed of the composites; the same for every run, so run seeds vary only the training."
    )
    stretch: bool = Field(
        False, description="Stretch each canvas's intensities to span 0-255 before the resize, as scipy's imresize "
        "did in Sener & Koltun's loader (false: keep the pixels)."
    )

    @field_validator("offset")
    @classmethod
    def _right_image_on_canvas(cls, offset: int, info: ValidationInfo) -> int:
        canvas = info.data.get("canvas", 36)  # declared before offset, so already validated
        if offset + 28 > canvas:
            raise ValueError(f"offset {offset} puts the 28x28 right image past the {canvas}-pixel canvas")
        return offset

    @classmethod
    def example(cls, name: str, workdir: Path) -> dict[str, Any]:
        """One composite per source image (the embedded samples build in a second)."""
        return {"dataset": name, "per_image": 1}

    def input_shape(self) -> tuple[int, ...]:
        return (1, self.size, self.size)

    def sources(self) -> tuple[Source, ...]:
        return tuple(SOURCES[name] for name in dict.fromkeys(OVERLAYS[self.dataset]) if name in SOURCES)

    def load(self, seed: int) -> Dataset:
        from mtlab.data.overlay import overlay_dataset

        left, right = (self._side(name) for name in OVERLAYS[self.dataset])
        return overlay_dataset(self.dataset, left, right, self)

    def _side(self, source_name: str) -> Side:
        """One side of the composites: its verified files, identified for the cache by their content digests."""
        from mtlab.data.overlay import Side
        from mtlab.tasks import Task

        if source_name not in SOURCES:
            raise DataError(
                f"{self.dataset} is built from the embedded {source_name}, which this installation of mtlab does not "
                "ship; use the full-data variant (e.g. multi-mnist) or multi-fashion-sample"
            )
        found = find(source_name, self.data_dir, self.download)
        digests = tuple(raw.digest for raw in found.source.files)  # == the verified content of each file
        task = Task("class", SOURCE_CLASSES[source_name])
        return Side(source_name, digests, task, origin(found), lambda prefix: idx_split(found, prefix, task.name))
