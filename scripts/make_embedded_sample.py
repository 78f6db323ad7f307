"""Write the Fashion-MNIST sample embedded in the package (dataset ``fashion-mnist-sample``).

A stratified, seeded sample of the real Fashion-MNIST: 300 training images per class (3000) and 100 test images per
class (1000), kept in their original order, as the four official IDX ``.gz`` files. The output is byte-for-byte
reproducible (fixed seed, gzip mtime 0), and the script prints the SHA-256 digests of the decompressed files for
``FASHION_MNIST_SAMPLE`` in ``src/mtlab/data/sources.py``.

    python scripts/make_embedded_sample.py [--source DIR] [--out DIR]

``--source`` is a directory holding the real files (else the usual resolution chain finds them).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from mtlab.data.idx import read_bytes, read_idx, write_idx
from mtlab.data.resolve import resolve
from mtlab.data.sources import SOURCES

SEED = 0
PER_CLASS = {"train": 300, "t10k": 100}
OUT = Path(__file__).resolve().parents[1] / "src" / "mtlab" / "embedded" / "fashion-mnist-sample"


def stratified_index(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` indices of each class of ``labels`` (N,), drawn without replacement, sorted ascending."""
    chosen = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="directory with the real Fashion-MNIST files")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output directory (default {OUT})")
    args = parser.parse_args()

    found = resolve(SOURCES["fashion-mnist"], args.source)
    rng = np.random.default_rng(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    for prefix, per_class in PER_CLASS.items():
        images = read_idx(found.path(f"{prefix}-images-idx3-ubyte"), remedy=found.source.remedy)
        labels = read_idx(found.path(f"{prefix}-labels-idx1-ubyte"), remedy=found.source.remedy)
        index = stratified_index(labels, per_class, rng)
        for kind, array in (("images-idx3", images[index]), ("labels-idx1", labels[index])):
            path = args.out / f"{prefix}-{kind}-ubyte.gz"
            write_idx(path, array)
            digest = hashlib.sha256(read_bytes(path)).hexdigest()
            print(f"{path.name}: {len(index)} examples, decompressed sha256 {digest}")


if __name__ == "__main__":
    main()
