"""``celeba``: CelebA's 40 face attributes as 40 binary tasks (or the ones chosen), on the aligned and cropped images,
in the official layout (Liu, Luo, Wang & Tang, "Deep Learning Face Attributes in the Wild", ICCV 2015).

Files, as published at https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive; no direct download):

* ``img_align_celeba/000001.jpg`` .. ``202599.jpg``: 202,599 JPEGs of 178 x 218 (width x height);
* ``list_attr_celeba.txt``: the image count, then the 40 attribute names, then per image its file name and 40
  values, 1 (has the attribute) or -1;
* ``list_eval_partition.txt``: per image its file name and 0 (train, 162,770), 1 (validation, 19,867) or 2
  (test, 19,962), in the same order.

They may lie flat in one folder (torchvision's layout) or in the Drive folder's ``Img/``, ``Anno/`` and ``Eval/``
subfolders (what FAMO's code reads). The official partition gives all three splits: train, validation (mtlab's
validation split, used instead of carving one) and test.

Images are decoded with Pillow and, by default, resized to 64 x 64 with bilinear filtering - what the multi-task
papers train on (Sener & Koltun 2018; FAMO's ``transforms.Resize((64, 64))``, which on PIL images is Pillow's
bilinear resize) - and kept as uint8 (202,599 x 3 x 64 x 64: 2.5 GB); ``image_size: null`` keeps 178 x 218 (23.6 GB).
Decoding takes minutes, so the decoded splits are kept in the derived-dataset cache (:mod:`mtlab.data.derived`),
keyed by the two lists' SHA-256, the images' count and total size, and the image size.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from mtlab.config.base import DataBase, register_dataset
from mtlab.data.placed import HandPlaced, find, register_hand_placed
from mtlab.errors import DataError, check_chosen

ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip
SPLITS = ("train", "val", "test")  # partition 0, 1, 2
COUNTS = {"train": 162770, "val": 19867, "test": 19962}
NATIVE_SIZE = (178, 218)  # (width, height), as Pillow gives it
LAYOUTS = {  # where the three parts lie: flat (torchvision) or in the Google Drive folder's subfolders
    "flat": ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"),
    "drive": ("Img/img_align_celeba", "Anno/list_attr_celeba.txt", "Eval/list_eval_partition.txt"),
}
OBTAIN = (
    "download img_align_celeba.zip, list_attr_celeba.txt and list_eval_partition.txt from the CelebA page "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive: Img/, Anno/, Eval/) into a folder celeba/, "
    "and unzip the images there (celeba/img_align_celeba/000001.jpg ..)"
)
REMEDY = f"to get intact files, {OBTAIN}"
FORMAT = 1  # bump when the decoding changes: cached splits of an older decoding are then rebuilt


def layout(root: Path) -> tuple[Path, Path, Path]:
    """(images folder, attribute list, partition list) under ``root``, flat or in the Drive's subfolders."""
    for parts in LAYOUTS.values():
        paths = tuple(root / part for part in parts)
        if paths[1].is_file():
            return paths  # type: ignore[return-value]
    return tuple(root / part for part in LAYOUTS["flat"])  # type: ignore[return-value]


def read_attributes(path: Path) -> tuple[list[str], np.ndarray]:
    """The image names and their (N, 40) int8 values (1 or -1) of ``list_attr_celeba.txt``."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be read ({e}); {REMEDY}") from e
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataError(f"{path}: does not start with the image count and the attribute names; {REMEDY}")
    names = tuple(lines[1].split())
    if names != ATTRIBUTES:
        raise DataError(f"{path}: line 2 names {len(names)} attributes, not CelebA's 40 in their order; {REMEDY}")
    rows = [line.split() for line in lines[2:] if line.strip()]
    if len(rows) != int(lines[0]):
        raise DataError(f"{path}: announces {int(lines[0])} images on line 1 but lists {len(rows)}; {REMEDY}")
    bad = next((i for i, row in enumerate(rows) if len(row) != 41), None)
    if bad is not None:
        raise DataError(f"{path}: line {bad + 3} holds {len(rows[bad]) - 1} values, expected 40; {REMEDY}")
    values = np.array([row[1:] for row in rows], dtype=np.int64).reshape(len(rows), 40)
    if not np.isin(values, (-1, 1)).all():
        line = int(np.flatnonzero(~np.isin(values, (-1, 1)).all(1))[0]) + 3
        raise DataError(f"{path}: line {line} holds a value other than 1 or -1; {REMEDY}")
    return [row[0] for row in rows], values.astype(np.int8)


def read_partition(path: Path, names: list[str], attributes_path: Path) -> np.ndarray:
    """(N,) int64 split per image (0 train, 1 validation, 2 test), in the order of ``names``."""
    try:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be read ({e}); {REMEDY}") from e
    if [row[0] for row in rows] != names:
        raise DataError(f"{path}: does not list the images of {attributes_path} in the same order; {REMEDY}")
    if any(len(row) != 2 or row[1] not in ("0", "1", "2") for row in rows):
        line = next(i for i, row in enumerate(rows) if len(row) != 2 or row[1] not in ("0", "1", "2")) + 1
        raise DataError(f"{path}: line {line} is not '<image> 0|1|2'; {REMEDY}")
    return np.array([int(row[1]) for row in rows], dtype=np.int64)


def image_files(folder: Path) -> tuple[int, int]:
    """(count, total bytes) of the JPEGs in ``folder``."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; {REMEDY}")
    count = size = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(".jpg"):
                count += 1
                size += entry.stat().st_size
    return count, size


def check_counts(folder: Path, partition: np.ndarray, partition_path: Path) -> None:
    """The published counts: 202,599 images, split 162,770 / 19,867 / 19,962."""
    count, _ = image_files(folder)
    if count != len(partition) or count != sum(COUNTS.values()):
        raise DataError(
            f"{folder}: holds {count} images, expected the published {sum(COUNTS.values())}; {REMEDY} "
            "(data.check_counts: false loads a part of the files)"
        )
    found = np.bincount(partition, minlength=3)
    if tuple(found) != tuple(COUNTS.values()):
        raise DataError(f"{partition_path}: splits the images {tuple(found)}, expected {tuple(COUNTS.values())}")


def decode(path: Path, size: int | None) -> np.ndarray:
    """One aligned image -> (3, H, W) uint8: (3, size, size) bilinear-resized, or (3, 218, 178) with no size."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.size != NATIVE_SIZE:
                raise DataError(
                    f"{path}: is {image.size[0]} x {image.size[1]}, not the aligned images' 178 x 218; {REMEDY}"
                )
            rgb = image.convert("RGB")
    except FileNotFoundError as e:
        raise DataError(f"{path}: missing, though the attribute list names it; {REMEDY}") from e
    except OSError as e:
        raise DataError(f"{path}: not a readable image ({e}); {REMEDY}") from e
    if size is not None:
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.array(rgb).transpose(2, 0, 1)  # a copy: Pillow's array view is read-only


def _survey(root: Path) -> str:
    folder, attributes_path, partition_path = layout(root)
    try:
        names, _ = read_attributes(attributes_path)
        partition = read_partition(partition_path, names, attributes_path)
        check_counts(folder, partition, partition_path)
    except DataError as e:
        return f"incomplete: {str(e).split('; ')[0]}"
    return "complete: " + " + ".join(f"{COUNTS[s]} {s}" for s in SPLITS)


def _verify(root: Path) -> list[str]:
    """Counts, then every image's size from its header (no decoding)."""
    from PIL import Image

    folder, attributes_path, partition_path = layout(root)
    try:
        names, _ = read_attributes(attributes_path)
        check_counts(folder, read_partition(partition_path, names, attributes_path), partition_path)
    except DataError as e:
        return [str(e).split("; ")[0]]
    problems = []
    for name in names:
        try:
            with Image.open(folder / name) as image:
                if image.size != NATIVE_SIZE:
                    problems.append(f"{folder / name}: is {image.size[0]} x {image.size[1]}, not 178 x 218")
        except OSError as e:
            problems.append(f"{folder / name}: not a readable image ({e})")
    return problems


CELEBA = register_hand_placed(
    HandPlaced(
        "celeba",
        ("celeba", "CelebA"),
        OBTAIN,
        tuple(parts[1] for parts in LAYOUTS.values()),
        _survey,
        _verify,
        licence="non-commercial research only (the CelebA agreement)",
    )
)


@register_dataset
class CelebAData(DataBase):
    """CelebA (aligned images, official partition): 40 binary attribute tasks, or those in ``attributes``."""

    dataset: Literal["celeba"]
    attributes: list[str] | None = Field(
        None, description="The attributes to load as tasks, by their official names (default: all 40)."
    )
    image_size: int | None = Field(
        64, gt=0, description="Resize every image to this square side (bilinear); null keeps 178 x 218."
    )
    check_counts: bool = Field(
        True, description="Require the published 202,599 images split 162,770 / 19,867 / 19,962."
    )
    decode_workers: int | None = Field(
        None, gt=0, description="Threads decoding the images the first time (default: every core)."
    )

    @field_validator("attributes")
    @classmethod
    def _known(cls, attributes: list[str] | None) -> list[str] | None:
        return None if attributes is None else check_chosen(attributes, ATTRIBUTES, "CelebA attribute", "all 40")

    def task_types(self) -> dict[str, str]:
        return dict.fromkeys(self.attributes or ATTRIBUTES, "binary")

    def input_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size) if self.image_size else (3, NATIVE_SIZE[1], NATIVE_SIZE[0])

    @classmethod
    def example(cls, name: str, workdir: Path) -> dict[str, Any]:
        """Six random 178 x 218 JPEGs with random attributes, in the flat official layout (3 train, 1 val, 2 test)."""
        write_example_files(workdir / "celeba", partition=[0, 0, 1, 2, 0, 2])
        return {"dataset": name, "data_dir": str(workdir), "check_counts": False, "image_size": 16}

    def load(self, seed: int):
        import torch

        from mtlab.data.dataset import Dataset, Split
        from mtlab.data.derived import cached_tensors, file_sha256
        from mtlab.tasks import Task

        root = find(CELEBA, self.data_dir)
        folder, attributes_path, partition_path = layout(root)
        names, values = read_attributes(attributes_path)
        partition = read_partition(partition_path, names, attributes_path)
        if self.check_counts:
            check_counts(folder, partition, partition_path)
        description = {
            "dataset": "celeba",
            "format": FORMAT,
            "attributes": file_sha256(attributes_path),
            "partition": file_sha256(partition_path),
            "images": list(image_files(folder)),
            "image_size": self.image_size,
        }

        def build() -> dict[str, torch.Tensor]:
            h, w = (self.image_size,) * 2 if self.image_size else NATIVE_SIZE[::-1]
            tensors, jobs = {}, []  # jobs: (split's images (n, 3, H, W), position in it, index in the lists)
            for code, split in enumerate(SPLITS):
                rows = np.flatnonzero(partition == code)
                tensors[f"images_{split}"] = torch.empty(len(rows), 3, h, w, dtype=torch.uint8)
                tensors[f"values_{split}"] = torch.from_numpy(values[rows])
                jobs += [(tensors[f"images_{split}"], position, int(i)) for position, i in enumerate(rows)]

            def put(job: tuple[torch.Tensor, int, int]) -> None:
                images, position, i = job
                images[position] = torch.from_numpy(decode(folder / names[i], self.image_size))

            with ThreadPoolExecutor(self.decode_workers or os.cpu_count() or 1) as pool:
                list(pool.map(put, jobs))  # Pillow releases the GIL while decoding and resizing
            return tensors

        tensors, _, _ = cached_tensors("celeba", description, build)
        chosen = self.attributes or list(ATTRIBUTES)
        columns = [ATTRIBUTES.index(a) for a in chosen]
        tasks = {a: Task(a, ("no", "yes"), "binary") for a in chosen}

        def split(name: str) -> Split:
            values = tensors[f"values_{name}"]  # (N, 40) int8, 1 or -1
            labels = {a: (values[:, c] > 0).float() for a, c in zip(chosen, columns, strict=True)}
            return Split(tensors[f"images_{name}"], labels)

        empty = [s for s in SPLITS if len(tensors[f"values_{s}"]) == 0]
        if empty:
            raise DataError(f"{partition_path}: puts no image in the {empty[0]} split; {REMEDY}")
        return Dataset(self.dataset, tasks, split("train"), split("test"), str(root), val=split("val"))


def write_example_files(root: Path, partition: list[int], seed: int = 0) -> Path:
    """Random 178 x 218 JPEGs and the two lists in the flat official layout under ``root`` (one image per entry of
    ``partition``, its split code), formatted as the official files are. Returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(partition))]
    values = np.where(rng.random((len(names), 40)) < 0.5, 1, -1)
    for name in names:
        pixels = rng.integers(0, 256, (NATIVE_SIZE[1], NATIVE_SIZE[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name, quality=90)
    rows = [f"{name} " + " ".join(f"{v:2d}" for v in row) for name, row in zip(names, values, strict=True)]
    (root / "list_attr_celeba.txt").write_text("\n".join([str(len(names)), " ".join(ATTRIBUTES) + " ", *rows]) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, partition, strict=True)))
    return root
