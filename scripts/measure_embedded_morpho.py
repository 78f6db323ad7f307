"""Measure the embedded MNIST sample's morphometrics once (Castro et al. 2019; :mod:`mtlab.data.morpho`) and ship
them beside it, so that ``morpho-mnist-sample`` loads at once and needs no scikit-image at run time.

    python scripts/measure_embedded_morpho.py      # writes src/mtlab/embedded/mnist-sample/morpho.npz

The file holds ``train`` (5000, 6) and ``test`` (2000, 6) float32 in ``mtlab.data.morpho.MEASURES`` order (NaN: not
measurable), the digests of the four IDX files they were measured from, and the measurement format; the dataset
uses it only when both match (else it measures and caches as for the full MNIST). tests/test_morpho_mnist.py
re-measures a sample of digits and compares.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlab.config.schema import MnistData
from mtlab.data import morpho
from mtlab.data.catalog import load_dataset
from mtlab.data.morpho_mnist import EMBEDDED_MEASURES, FORMAT, source_digests


def main() -> None:
    digits = load_dataset(MnistData(dataset="mnist-sample"))
    arrays = {
        split: morpho.measure_images(getattr(digits, split).images[:, 0].numpy()).astype(np.float32)
        for split in ("train", "test")
    }
    path = Path(EMBEDDED_MEASURES)
    np.savez_compressed(
        path, **arrays, digests=np.array(source_digests("mnist-sample")), format=np.array(FORMAT),
        measures=np.array(morpho.MEASURES),
    )
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
