"""Write a real-data sample embedded in the package: ``fashion-mnist-sample`` or ``mnist-sample``.

A stratified, seeded sample of the real dataset, kept in the original order, as the four official IDX ``.gz`` files:

- ``fashion-mnist-sample``: 300 training and 100 test images per class of Fashion-MNIST (3000 / 1000);
- ``mnist-sample``: 500 training and 200 test images per digit of MNIST (5000 / 2000; enough test images for the
  1000 test pairs of ``mnist-pairs`` with ``data.digits: mnist-sample``).

The output is byte-for-byte reproducible (fixed seed, gzip mtime 0), and the script prints the SHA-256 digests of
the decompressed files for the sample's ``Source`` in its dataset module (``src/mtlab/data/fashion.py`` or
``mnist.py``). Where the data comes from and under which licence it is shared: ``src/mtlab/embedded/README.md``.

    python scripts/make_embedded_sample.py [--sample NAME] [--source DIR] [--out DIR]

``--source`` is a directory holding the real files (else the usual resolution chain finds them).
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import mtlab.data.builtin  # noqa: F401  (registers the sources)
from mtlab.data.idx import read_bytes, read_idx, write_idx
from mtlab.data.resolve import resolve
from mtlab.data.sources import SOURCES

SEED = 0
EMBEDDED = Path(__file__).resolve().parents[1] / "src" / "mtlab" / "embedded"


@dataclass(frozen=True)
class Sample:
    source: str  # the full dataset's source in SOURCES
    per_class: dict[str, int]  # IDX prefix (train / t10k) -> images per class


SAMPLES = {
    "fashion-mnist-sample": Sample("fashion-mnist", {"train": 300, "t10k": 100}),
    "mnist-sample": Sample("mnist", {"train": 500, "t10k": 200}),
}


def stratified_index(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` indices of each class of ``labels`` (N,), drawn without replacement, sorted ascending."""
    chosen = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", choices=list(SAMPLES), default="fashion-mnist-sample", help="which sample")
    parser.add_argument("--source", type=Path, help="directory with the real dataset's files")
    parser.add_argument("--out", type=Path, help=f"output directory (default {EMBEDDED}/SAMPLE)")
    args = parser.parse_args()

    sample = SAMPLES[args.sample]
    out = args.out or EMBEDDED / args.sample
    found = resolve(SOURCES[sample.source], args.source)
    rng = np.random.default_rng(SEED)
    out.mkdir(parents=True, exist_ok=True)
    for prefix, per_class in sample.per_class.items():
        images = read_idx(found.path(f"{prefix}-images-idx3-ubyte"), remedy=found.source.remedy)
        labels = read_idx(found.path(f"{prefix}-labels-idx1-ubyte"), remedy=found.source.remedy)
        index = stratified_index(labels, per_class, rng)
        for kind, array in (("images-idx3", images[index]), ("labels-idx1", labels[index])):
            path = out / f"{prefix}-{kind}-ubyte.gz"
            write_idx(path, array)
            digest = hashlib.sha256(read_bytes(path)).hexdigest()
            print(f"{path.name}: {len(index)} examples, decompressed sha256 {digest}")


if __name__ == "__main__":
    main()
