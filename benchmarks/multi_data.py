"""The multi-* composites: a first load (build and write the cache entry) vs a cached load, in one process.

For each dataset, in a fresh temporary user cache, each load as a new process would do it (the in-process memos of
file digests, parsed IDX files and loaded entries cleared first): (1) the source datasets alone (verify, decompress
and parse the IDX files), (2) the first ``load_dataset`` of the composites (verify + parse + compose both splits +
write the entry), (3) a cached load (verify the source files - a changed file must not be served - and read the
entry). Prints seconds and the ratio (2) / (3).

    MTLAB_DATA=../shared/data python benchmarks/multi_data.py [--datasets multi-fashion-sample,multi-mnist]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from mtlab.data import derived, load_dataset, mnist, resolve
from mtlab.data.fashion import FashionData
from mtlab.data.mnist import MnistData
from mtlab.data.multi_mnist import OVERLAYS, MultiData

SOURCE_CONFIG = {
    "mnist": lambda: MnistData(dataset="mnist"),
    "fashion-mnist": lambda: FashionData(dataset="fashion-mnist"),
    "fashion-mnist-sample": lambda: FashionData(dataset="fashion-mnist-sample"),
}


def timed(call) -> tuple[float, object]:
    """Seconds ``call()`` takes in a process that has read nothing yet, and its result."""
    resolve._DIGESTS.clear()
    mnist._parse_once.cache_clear()
    derived._load.cache_clear()
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="multi-fashion-sample,multi-mnist")
    args = parser.parse_args()
    print(f"{'dataset':<22} {'composites':>14} {'sources':>8} {'first':>8} {'cached':>8} {'first/cached':>12}")
    for name in args.datasets.split(","):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["XDG_CACHE_HOME"] = cache
            measure(name)


def measure(name: str) -> None:
    config = MultiData(dataset=name)
    sources, _ = timed(lambda: [load_dataset(SOURCE_CONFIG[s]()) for s in dict.fromkeys(OVERLAYS[name])])
    first, data = timed(lambda: load_dataset(config))
    cached, _ = timed(lambda: load_dataset(config))
    size = f"{len(data.train)}+{len(data.test)}"
    print(f"{name:<22} {size:>14} {sources:>7.2f}s {first:>7.2f}s {cached:>7.2f}s {first / cached:>11.1f}x")


if __name__ == "__main__":
    main()
