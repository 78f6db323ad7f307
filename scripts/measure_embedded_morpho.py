"""Measure the morphometrics of the MNIST sample embedded in mtlab and of the official MNIST files once (Castro et
al. 2019; :mod:`mtlab.data.morpho`) and ship them, so that ``morpho-mnist-sample`` and ``morpho-mnist`` load at once
and need no scikit-image at run time.

    python scripts/measure_embedded_morpho.py              # the embedded sample (about 40 s on 2 cores)
    python scripts/measure_embedded_morpho.py mnist        # the official MNIST files (about 4 min on 2 cores)

Each file ``src/mtlab/embedded/morpho/<source>.npz`` holds ``train`` and ``test`` (N, 6) float32 in
``mtlab.data.morpho.MEASURES`` order (NaN: not measurable), the digests of the four IDX files they were measured
from, and the measurement format; the dataset uses it only when both match (else it measures and caches).
tests/test_morpho_mnist.py re-measures a sample of digits and compares.
"""

from __future__ import annotations

import sys

import numpy as np

from mtlab.data import morpho
from mtlab.data.catalog import load_dataset
from mtlab.data.mnist import MnistData
from mtlab.data.morpho_mnist import FORMAT, SHIPPED_MEASURES, source_digests


def main(source: str = "mnist-sample") -> None:
    digits = load_dataset(MnistData(dataset=source))
    arrays = {
        split: morpho.measure_images(getattr(digits, split).images[:, 0].numpy()).astype(np.float32)
        for split in ("train", "test")
    }
    path = SHIPPED_MEASURES / f"{source}.npz"
    np.savez_compressed(
        path, **arrays, digests=np.array(source_digests(source)), format=np.array(FORMAT),
        measures=np.array(morpho.MEASURES),
    )
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main(*sys.argv[1:])
