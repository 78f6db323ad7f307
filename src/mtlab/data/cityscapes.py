"""``cityscapes``: Cityscapes as the dense multi-task benchmark - 7-class segmentation and disparity (inverse depth)
on 2,975 training and 500 test images of 128 x 256, in the preprocessed files of Liu et al.'s MTAN repository
(:mod:`mtlab.data.mtan_layout` says what each file holds and how it is read).

Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention" (CVPR 2019); the 128 x 256 version (the
repository's ``cityscapes2.zip``) is what Nash-MTL (Navon et al. 2022) and FAMO (Liu et al. 2023) train on, with the
7-class labels (``label_7``). The 7 classes are Cityscapes' categories without ``void`` (-1 here), in the order of
their category ids; ``classes: 19`` reads ``label_19`` instead, Cityscapes' 19 evaluation classes in train-id
order.

Tasks: ``segmentation`` (segmentation) and ``depth`` (depth: the files' inverse depth, 0 meaning none); pick with
the run's top-level ``tasks:``. The ``val`` folder is the split the papers report on; it is mtlab's test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from mtlab.config.base import register_dataset
from mtlab.data.mtan_options import MtanData
from mtlab.data.placed import HandPlaced, register_hand_placed

SIZE = (128, 256)
COUNTS = {"train": 2975, "val": 500}
CLASSES = {
    7: ("flat", "construction", "object", "nature", "sky", "human", "vehicle"),
    19: (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
        "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
    ),
}  # fmt: skip
URL = "https://www.dropbox.com/s/lg2ktu7o8hzwf99/cityscapes2.zip?dl=0"
OBTAIN = (
    f"download cityscapes2.zip (the 128 x 256 Cityscapes of the MTAN repository, github.com/lorenmt/mtan) from {URL} "
    "and unzip it so that cityscapes2/train/{image,label_7,depth}/0.npy .. and cityscapes2/val/... exist"
)


def _folders(classes: int = 7) -> dict[str, str]:
    return {"image": "image", "label": f"label_{classes}", "depth": "depth"}


def _survey(root: Path) -> str:
    from mtlab.data import mtan_layout

    return mtan_layout.survey(root, _folders(), COUNTS)


def _verify(root: Path) -> list[str]:
    from mtlab.data import mtan_layout

    return mtan_layout.verify(root, _folders(), COUNTS, SIZE)


CITYSCAPES = register_hand_placed(
    HandPlaced("cityscapes", ("cityscapes2", "cityscapes"), OBTAIN, ("train/image",), _survey, _verify,
               licence="the Cityscapes terms: non-commercial research, after registering")
)


@register_dataset
class CityscapesData(MtanData):
    """Cityscapes (MTAN's preprocessed 128 x 256 files): segmentation (7 or 19 classes) and disparity."""

    dataset: Literal["cityscapes"]
    classes: Literal[7, 19] = Field(7, description="Segmentation classes: 7 (label_7, the papers') or 19 (label_19).")

    place: ClassVar[HandPlaced] = CITYSCAPES
    size: ClassVar[tuple[int, int]] = SIZE
    counts: ClassVar[dict[str, int]] = COUNTS
    tasks: ClassVar[dict[str, tuple[str, str]]] = {
        "segmentation": ("segmentation", "label"),
        "depth": ("depth", "depth"),
    }

    def folders(self) -> dict[str, str]:
        return _folders(self.classes)

    def class_names(self) -> dict[str, tuple[str, ...]]:
        return {"segmentation": CLASSES[self.classes], "depth": ("inverse depth",)}

    @classmethod
    def example(cls, name: str, workdir: Path) -> dict[str, Any]:
        """Three training and two test images of random values in the exact layout, at full size."""
        from mtlab.data.mtan_layout import write_example_files

        write_example_files(workdir / "cityscapes2", _folders(), SIZE, {"train": 3, "val": 2}, 7)
        return {"dataset": name, "data_dir": str(workdir), "check_counts": False}
