"""The preprocessed NYUv2 and Cityscapes of Liu et al.'s MTAN repository (github.com/lorenmt/mtan), the files that
LibMTL, Nash-MTL and FAMO read: one ``.npy`` array per image and per target, in
``<root>/{train,val}/<folder>/<i>.npy`` for i = 0 .. N-1.

What each folder holds (read as the reference ``create_dataset.py`` reads it; H x W is 288 x 384 for NYUv2,
128 x 256 for Cityscapes), and what mtlab makes of it:

* ``image``: (H, W, 3) floats, RGB in [0, 1] -> inputs (3, H, W), kept as uint8 pixels 0-255 when every value is a
  multiple of 1/255 (it is, for images scaled from 8-bit RGB; a quarter of the memory), else float32 in [0, 1];
* ``label``, ``label_7``, ``label_19``: (H, W) floats holding class indices, -1 where a pixel has none
  -> segmentation targets (H, W) int16, -1 kept;
* ``depth``: (H, W, 1) floats, 0 where a pixel has no measurement (NYUv2: depth in metres; Cityscapes: inverse
  depth) -> targets (1, H, W) float32 with NaN there;
* ``normal``: (H, W, 3) floats, unit normals, the zero vector where a pixel has none -> targets (3, H, W) float32
  with NaN there. A pixel counts as having none where its three components sum to 0 - the mask the reference's
  loss and metrics use (``torch.sum(x_output, dim=1) != 0``).

The splits are read whole into memory (each file through a memory map, straight into the split's tensor), which for
NYUv2 is about 1.8 GB for the 795 training images and 1.5 GB for the 654 test images (normals, float32, are most of
it) - once per process while the files are unchanged (:func:`cached_dataset`), shared by the stacked seeds and the
runs of a study. The ``val`` folder is the split the papers report on: mtlab loads it as the test split.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mtlab.data.dataset import Dataset, Split
from mtlab.errors import DataError
from mtlab.tasks import Task

SPLITS = ("train", "val")
KINDS = ("image", "label", "depth", "normal")
CHANNELS = {"image": 3, "label": None, "depth": 1, "normal": 3}
"""Channels of a stored array per kind: (H, W, C), or (H, W) for None."""


def stored_shape(kind: str, size: tuple[int, int]) -> tuple[int, ...]:
    channels = CHANNELS[kind]
    return size if channels is None else (*size, channels)


def file_count(directory: Path, remedy: str) -> int:
    """How many arrays ``directory`` holds; they must be ``0.npy`` .. ``<n-1>.npy``, nothing skipped."""
    if not directory.is_dir():
        raise DataError(f"{directory}: no such folder; {remedy}")
    names = [p.name for p in directory.iterdir() if p.suffix == ".npy"]
    numbers = sorted(int(n[:-4]) for n in names if n[:-4].isdigit())
    if len(numbers) != len(names) or numbers != list(range(len(numbers))):
        gap = next((i for i, n in enumerate(numbers) if n != i), len(numbers))
        raise DataError(
            f"{directory}: the arrays must be 0.npy .. {len(names) - 1}.npy, but {gap}.npy is missing "
            f"({len(names)} .npy files); {remedy}"
        )
    return len(names)


def split_size(root: Path, split: str, folders: dict[str, str], expected: int | None, remedy: str) -> int:
    """The number of examples of ``split``: every folder must hold as many arrays (``expected``, when given)."""
    counts = {folder: file_count(root / split / folder, remedy) for folder in folders.values()}
    first_folder, n = next(iter(counts.items()))
    for folder, count in counts.items():
        if count != n:
            raise DataError(
                f"{root / split / folder}: holds {count} arrays but {root / split / first_folder} holds {n}; "
                f"every folder holds one array per image; {remedy}"
            )
    if expected is not None and n != expected:
        raise DataError(
            f"{root / split / first_folder}: holds {n} arrays, expected the published {expected}; {remedy} "
            "(data.check_counts: false loads a part of the files)"
        )
    return n


def survey(root: Path, folders: dict[str, str], counts: dict[str, int]) -> str:
    """A one-line state for ``mtlab data list``: the counts, or the first problem with them."""
    try:
        found = [split_size(root, split, folders, counts[split], "") for split in SPLITS]
    except DataError as e:
        return f"incomplete: {str(e).rstrip('; ')}"
    return "complete: " + " + ".join(f"{n} {split}" for n, split in zip(found, SPLITS, strict=True))


def verify(root: Path, folders: dict[str, str], counts: dict[str, int], size: tuple[int, int]) -> list[str]:
    """Every problem with the copy at ``root``: counts, then each array's shape and dtype (headers only)."""
    problems = []
    for split in SPLITS:
        try:
            n = split_size(root, split, folders, counts[split], "")
        except DataError as e:
            problems.append(str(e).rstrip("; "))
            continue
        for kind, folder in folders.items():
            for i in range(n):
                path = root / split / folder / f"{i}.npy"
                try:
                    _check_array(_open(path, ""), path, stored_shape(kind, size), "")
                except DataError as e:
                    problems.append(str(e).rstrip("; "))
    return problems


def _open(path: Path, remedy: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npy array ({e}); {remedy}") from e


def _check_array(array: np.ndarray, path: Path, shape: tuple[int, ...], remedy: str) -> None:
    if array.shape != shape or array.dtype.kind not in "fiu":
        raise DataError(
            f"{path}: holds a {array.dtype} array of shape {array.shape}, expected {shape} numbers; {remedy}"
        )


def read_split(
    root: Path, split: str, folders: dict[str, str], size: tuple[int, int], expected: int | None, remedy: str
) -> tuple[Tensor, dict[str, Tensor]]:
    """Inputs (N, 3, H, W) and targets by kind (``label``: (N, H, W) int16; ``depth``: (N, 1, H, W) and
    ``normal``: (N, 3, H, W) float32 with NaN for none) of one split; ``folders`` maps each kind to its folder."""
    n = split_size(root, split, folders, expected, remedy)
    h, w = size
    images = torch.empty(n, 3, h, w, dtype=torch.uint8)
    targets: dict[str, Tensor] = {}
    for kind in folders:
        if kind == "label":
            targets[kind] = torch.empty(n, h, w, dtype=torch.int16)
        elif kind != "image":
            targets[kind] = torch.empty(n, CHANNELS[kind], h, w, dtype=torch.float32)
    for i in range(n):
        for kind, folder in folders.items():
            path = root / split / folder / f"{i}.npy"
            array = _open(path, remedy)
            _check_array(array, path, stored_shape(kind, size), remedy)
            if kind == "image":
                images = _put_image(images, i, np.asarray(array, dtype=np.float32), path, remedy)
            elif kind == "label":
                targets[kind][i] = torch.from_numpy(_labels(np.asarray(array, dtype=np.float64), path, remedy))
            else:
                targets[kind][i] = torch.from_numpy(_values(kind, np.array(array, dtype=np.float32), path, remedy))
    return images, targets


def _put_image(images: Tensor, i: int, rgb: np.ndarray, path: Path, remedy: str) -> Tensor:
    """Store image ``i`` ((H, W, 3) in [0, 1]) into ``images`` (N, 3, H, W); uint8 while every image so far is a
    multiple of 1/255, else the whole tensor becomes float32 in [0, 1] (earlier images converted exactly)."""
    if not np.isfinite(rgb).all() or rgb.min() < 0 or rgb.max() > 1:
        raise DataError(
            f"{path}: image values lie in [{rgb.min():g}, {rgb.max():g}], expected RGB in [0, 1] as the MTAN "
            f"preprocessed files hold; {remedy}"
        )
    chw = np.moveaxis(rgb, -1, 0)  # (3, H, W)
    scaled = chw * np.float32(255)
    pixels = np.rint(scaled)
    # k / 255 in float32, times 255, is within 2e-5 of k: a tolerance of 1e-3 still tells 8-bit images from others.
    if images.dtype == torch.uint8 and np.abs(scaled - pixels).max() <= 1e-3:
        images[i] = torch.from_numpy(pixels.astype(np.uint8))
        return images
    if images.dtype == torch.uint8:
        images = images.float() / 255
    images[i] = torch.from_numpy(chw.astype(np.float32))
    return images


def _labels(values: np.ndarray, path: Path, remedy: str) -> np.ndarray:
    """(H, W) floats holding -1 or class indices -> int16; the class range is checked by the task type."""
    if not np.isfinite(values).all() or (values != np.rint(values)).any() or values.min() < -1:
        bad = values[~np.isfinite(values) | (values != np.rint(values)) | (values < -1)][0]
        raise DataError(f"{path}: holds {float(bad):g}, not a class index or -1 (no label); {remedy}")
    if values.max() > np.iinfo(np.int16).max:
        raise DataError(f"{path}: holds class index {values.max():g}, more than an int16 holds; {remedy}")
    return values.astype(np.int16)


def _values(kind: str, array: np.ndarray, path: Path, remedy: str) -> np.ndarray:
    """depth (H, W, 1) or normal (H, W, 3) -> (C, H, W) float32, NaN at the pixels without a value."""
    if np.isinf(array).any():
        raise DataError(f"{path}: holds infinite values; {remedy}")
    if kind == "depth" and (array < 0).any():
        raise DataError(f"{path}: holds the negative depth {float(array[array < 0][0]):g}; {remedy}")
    chw = np.ascontiguousarray(np.moveaxis(array, -1, 0))  # (C, H, W)
    missing = chw.sum(0) == 0  # (H, W): the reference's mask; NaN counts as missing too
    missing |= np.isnan(chw).any(0)
    chw[:, missing] = np.nan
    return chw


def load_split_targets(
    root: Path,
    split: str,
    tasks: dict[str, tuple[Task, str, str]],
    size: tuple[int, int],
    expected: int | None,
    remedy: str,
) -> Split:
    """One split as a :class:`Split`: ``tasks`` maps each task name to (its task, the kind of array, the folder);
    each task's targets are checked by its type (e.g. a class index beyond the task's classes)."""
    folders = {"image": "image", **{kind: folder for _, kind, folder in tasks.values()}}
    images, by_kind = read_split(root, split, folders, size, expected, remedy)
    labels = {}
    for name, (task, kind, folder) in tasks.items():
        labels[name] = by_kind[kind]
        problem = task.task_type.check_targets(task, by_kind[kind])
        if problem is not None:
            raise DataError(f"{root / split / folder}: the {task.type} targets of task {name!r} {problem}; {remedy}")
    return Split(images, labels)


def files_signature(root: Path, folders: Iterable[str]) -> tuple[tuple[str, int, int, int], ...]:
    """(folder, arrays, total bytes, latest mtime) for every ``<split>/<folder>`` under ``root``: changes whenever a
    file is added, removed, or rewritten, so a cached dataset is never served stale."""
    signature = []
    for split in SPLITS:
        for folder in folders:
            count = size = latest = 0
            directory = root / split / folder
            if directory.is_dir():
                with os.scandir(directory) as entries:
                    for entry in entries:
                        stat = entry.stat()
                        count, size, latest = count + 1, size + stat.st_size, max(latest, stat.st_mtime_ns)
            signature.append((f"{split}/{folder}", count, size, latest))
    return tuple(signature)


@functools.lru_cache(maxsize=2)
def cached_dataset(
    name: str,
    root: str,
    folders: tuple[tuple[str, str], ...],
    size: tuple[int, int],
    expected: tuple[tuple[str, int], ...] | None,
    tasks: tuple[tuple[str, str, str, tuple[str, ...]], ...],
    signature: tuple[tuple[str, int, int, int], ...],
    remedy: str,
) -> Dataset:
    """The dataset at ``root``, read once per process for as long as its files' ``signature`` holds; ``tasks``:
    (name, type, kind of array, class names) each. Runs share its tensors, so nothing may modify them in place
    (nothing in mtlab does: splits and batches are gathered copies)."""
    kinds = dict(folders)
    made = {n: Task(n, names, kind) for n, kind, _, names in tasks}
    wanted = {n: (made[n], array, kinds[array]) for n, _, array, _ in tasks}
    counts = dict(expected) if expected is not None else {}
    train, test = (load_split_targets(Path(root), split, wanted, size, counts.get(split), remedy) for split in SPLITS)
    return Dataset(name, made, train, test, root)


def write_example_files(
    root: Path, folders: dict[str, str], size: tuple[int, int], counts: dict[str, int], classes: int, seed: int = 0
) -> Path:
    """Small random files in the exact layout (``folders``: kind -> folder) under ``root``: float32 RGB multiples of
    1/255, labels with some -1, depth with some 0, unit normals with some zero vectors. Returns ``root``."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split, n in counts.items():
        for kind, folder in folders.items():
            directory = root / split / folder
            directory.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                hole = rng.random((h, w)) < 0.05  # pixels without a label / a value
                if kind == "image":
                    array = rng.integers(0, 256, (h, w, 3)).astype(np.float32) / np.float32(255)
                elif kind == "label":
                    array = np.where(hole, -1, rng.integers(0, classes, (h, w))).astype(np.float32)
                elif kind == "depth":
                    array = np.where(hole, 0, rng.uniform(0.5, 10, (h, w))).astype(np.float32)[..., None]
                else:
                    normal = rng.normal(size=(h, w, 3))
                    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
                    array = np.where(hole[..., None], 0, normal).astype(np.float32)
                np.save(directory / f"{i}.npy", array)
    return root
