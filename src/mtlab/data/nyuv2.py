"""``nyuv2``: NYU Depth v2 as the dense multi-task benchmark - 13-class segmentation, depth and surface normals on
795 training and 654 test images of 288 x 384, in the preprocessed files of Liu et al.'s MTAN repository
(:mod:`mtlab.data.mtan_layout` says what each file holds and how it is read).

Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention" (CVPR 2019), whose files and split LibMTL,
Nash-MTL (Navon et al. 2022) and FAMO (Liu et al. 2023) use. The 13 classes are those of Couprie et al. (2013) in
the order of the 13-class labels of github.com/ankurhanda/nyuv2-meta-data, 1-13 there, 0-12 here (-1: no label).
The surface normals are Eigen & Fergus's (2015), precomputed.

Tasks: ``segmentation`` (segmentation), ``depth`` (depth, metres), ``normal`` (normals); pick some with the run's
top-level ``tasks:``. The ``val`` folder is the split the papers report on; it is mtlab's test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from mtlab.config.base import register_dataset
from mtlab.data.mtan_options import MtanData
from mtlab.data.placed import HandPlaced, register_hand_placed

SIZE = (288, 384)
COUNTS = {"train": 795, "val": 654}
CLASSES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa", "table", "tv", "wall",
    "window",
)  # fmt: skip
FOLDERS = {"label": "label", "depth": "depth", "normal": "normal"}
URL = "https://www.dropbox.com/s/p2nn02wijg7peiy/nyuv2.zip?dl=0"
OBTAIN = (
    f"download nyuv2.zip (the preprocessed NYUv2 of the MTAN repository, github.com/lorenmt/mtan) from {URL} and "
    "unzip it so that nyuv2/train/{image,label,depth,normal}/0.npy .. and nyuv2/val/... exist"
)


def _survey(root: Path) -> str:
    from mtlab.data import mtan_layout

    return mtan_layout.survey(root, {"image": "image", **FOLDERS}, COUNTS)


def _verify(root: Path) -> list[str]:
    from mtlab.data import mtan_layout

    return mtan_layout.verify(root, {"image": "image", **FOLDERS}, COUNTS, SIZE)


NYUV2 = register_hand_placed(
    HandPlaced("nyuv2", ("nyuv2",), OBTAIN, ("train/image",), _survey, _verify,
               licence="none stated; cite NYU Depth V2 (Silberman et al., 2012)")
)


@register_dataset
class Nyuv2Data(MtanData):
    """NYUv2 (MTAN's preprocessed 288 x 384 files): segmentation (13 classes), depth, surface normals."""

    dataset: Literal["nyuv2"]

    place: ClassVar[HandPlaced] = NYUV2
    size: ClassVar[tuple[int, int]] = SIZE
    counts: ClassVar[dict[str, int]] = COUNTS
    tasks: ClassVar[dict[str, tuple[str, str]]] = {
        "segmentation": ("segmentation", "label"),
        "depth": ("depth", "depth"),
        "normal": ("normals", "normal"),
    }

    def folders(self) -> dict[str, str]:
        return {"image": "image", **FOLDERS}

    def class_names(self) -> dict[str, tuple[str, ...]]:
        return {"segmentation": CLASSES, "depth": ("depth",), "normal": ("x", "y", "z")}

    @classmethod
    def example(cls, name: str, workdir: Path) -> dict[str, Any]:
        """Three training and two test images of random values in the exact layout, at full size."""
        from mtlab.data.mtan_layout import write_example_files

        root = workdir / "nyuv2"
        write_example_files(root, {"image": "image", **FOLDERS}, SIZE, {"train": 3, "val": 2}, len(CLASSES))
        return {"dataset": name, "data_dir": str(workdir), "check_counts": False}
