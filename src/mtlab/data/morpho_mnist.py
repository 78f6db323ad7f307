"""``morpho-mnist``: MNIST digits with the morphometrics of Castro et al., "Morpho-MNIST: Quantitative Assessment
and Diagnostics for Representation Learning" (JMLR 2019), as regression tasks beside the digit.

Tasks: ``digit`` (multiclass) and ``thickness``, ``slant``, ``width``, ``height``, ``area``, ``length``
(regression, one output each), measured from the images themselves by :mod:`mtlab.data.morpho` (their published
procedure; that module says which steps it follows). The measures are computed once per source and kept in the
derived-dataset cache (:mod:`mtlab.data.derived`), keyed by the source files' digests. An image the procedure
cannot measure (an empty skeleton) has missing labels for the measures, never a made-up value.

``morpho-mnist-sample`` is the MNIST sample embedded in the package (5,000 / 2,000 digits; no download). The
measures of both - the sample and the official MNIST files - ship with mtlab (``embedded/morpho/<source>.npz``,
written by ``scripts/measure_embedded_morpho.py``, 2 x 0.1-1.4 MB), used only when the digests of the files they were
measured from and the measurement format match; so both load at once and need no scikit-image. Other files (or a new
procedure) are measured on first use and cached.
Task-pick with the top-level ``tasks:`` (e.g. ``[digit, thickness, slant]``); ``data.measure_workers`` sets the
processes used the first time.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from mtlab.config.base import DataBase, register_dataset
from mtlab.data import mnist
from mtlab.data.sources import Source

FORMAT = 1  # bump when the measurement changes: cached measures of an older procedure are then rebuilt
SHIPPED_MEASURES = Path(__file__).resolve().parents[1] / "embedded" / "morpho"  # <source>.npz


def source_digests(source: str) -> list[str]:
    """SHA-256 of the IDX files the digits come from (the verified content: what the measures depend on)."""
    return [raw.digest for raw in mnist.source(source).files]


def shipped_measures(source: str) -> dict[str, np.ndarray] | None:
    """The shipped measures of ``source`` if they are for exactly these files and this procedure, else None."""
    path = SHIPPED_MEASURES / f"{source}.npz"
    if not path.is_file():
        return None
    with np.load(path) as shipped:
        if list(shipped["digests"]) != source_digests(source) or int(shipped["format"]) != FORMAT:
            return None
        return {split: shipped[split] for split in ("train", "test")}


@register_dataset
class MorphoMnistData(DataBase):
    """MNIST with Castro et al.'s morphometrics (thickness, slant, width, height, area, length) as regression tasks."""

    dataset: Literal["morpho-mnist", "morpho-mnist-sample"]
    measure_workers: int | None = Field(
        None, gt=0, description="Processes measuring the digits the first time (default: every core)."
    )

    measures: ClassVar[tuple[str, ...]] = ("thickness", "slant", "width", "height", "area", "length")

    def task_types(self) -> dict[str, str]:
        return {"digit": "multiclass", **{m: "regression" for m in self.measures}}

    def input_shape(self) -> tuple[int, ...]:
        return (1, *mnist.SIZE)

    def sources(self) -> tuple[Source, ...]:
        return (mnist.source(self._digits()),)

    def _digits(self) -> str:
        """The MNIST source of the digits: the embedded sample for ``morpho-mnist-sample``."""
        return "mnist-sample" if self.dataset == "morpho-mnist-sample" else "mnist"

    def load(self, seed: int):
        import torch

        from mtlab.data import morpho
        from mtlab.data.dataset import Dataset, Split
        from mtlab.data.derived import cached_tensors
        from mtlab.tasks import Task

        source = self._digits()
        digits = mnist.MnistData(dataset=source, data_dir=self.data_dir, download=self.download).load(seed)
        description = {
            "dataset": self.dataset,
            "source": [source, source_digests(source)],
            "measures": list(morpho.MEASURES),
            "format": FORMAT,
        }

        def build() -> dict[str, torch.Tensor]:
            shipped = shipped_measures(source)
            if shipped is not None:
                return {split: torch.from_numpy(values) for split, values in shipped.items()}
            tensors = {}
            for split in ("train", "test"):
                images = getattr(digits, split).images[:, 0].numpy()  # (N, 28, 28) uint8
                values = morpho.measure_images(images, workers=self.measure_workers)  # (N, 6) float64, NaN: none
                tensors[split] = torch.from_numpy(values).float()
            return tensors

        tensors, _, _ = cached_tensors(self.dataset, description, build)
        columns = {m: morpho.MEASURES.index(m) for m in self.measures}
        tasks = {"digit": digits.tasks["digit"]}
        tasks.update({m: Task(m, (m,), type="regression") for m in self.measures})

        def split(name: str) -> Split:
            base = getattr(digits, name)
            labels = {"digit": base.labels["digit"]}
            labels.update({m: tensors[name][:, i].contiguous() for m, i in columns.items()})
            return Split(base.images, labels)

        return Dataset(self.dataset, tasks, split("train"), split("test"), digits.origin)

