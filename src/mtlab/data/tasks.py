"""Constants of the built-in datasets' tasks; :class:`~mtlab.tasks.Task` itself lives in :mod:`mtlab.tasks`."""

from __future__ import annotations

from mtlab.tasks import Task  # noqa: F401  (re-exported: where the data layer has always found it)

# Fashion-MNIST item classes grouped as in the original fashion-mtl study: shoes {sandal, sneaker, ankle boot},
# gendered {dress, shirt, bag}, unisex {t-shirt, trouser, pullover, coat}.
DEFAULT_FASHION_GROUPS: dict[str, tuple[int, ...]] = {
    "shoes": (5, 7, 9),
    "gendered": (3, 6, 8),
    "unisex": (0, 1, 2, 4),
}

# The multi-* composites (:mod:`mtlab.data.overlay`): dataset -> the sources of its (top-left, bottom-right) images.
# The ``-sample`` variants use the samples embedded in the package; ``mnist-sample`` is the embedded MNIST sample,
# and without it the variants that need it say so when loaded.
OVERLAYS: dict[str, tuple[str, str]] = {
    "multi-mnist": ("mnist", "mnist"),
    "multi-fashion": ("fashion-mnist", "fashion-mnist"),
    "multi-fashion-mnist": ("fashion-mnist", "mnist"),
    "multi-mnist-sample": ("mnist-sample", "mnist-sample"),
    "multi-fashion-sample": ("fashion-mnist-sample", "fashion-mnist-sample"),
    "multi-fashion-mnist-sample": ("fashion-mnist-sample", "mnist-sample"),
}
