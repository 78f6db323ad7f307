"""The one factory for every dataset: ``load_dataset(config.data, seed)``.

Each dataset is one module (:mod:`mtlab.data.mnist`, :mod:`mtlab.data.celeba`, ..., or an outside package's) whose
options class is registered in :data:`~mtlab.config.base.DATASETS` and loads its own files
(:meth:`~mtlab.config.base.DataBase.load`): the official train and test splits as tensors, one label tensor per task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mtlab.data.builtin  # noqa: F401  (registers mtlab's own datasets)
from mtlab.config.base import DATASETS
from mtlab.errors import ConfigError

if TYPE_CHECKING:
    from mtlab.data.dataset import Dataset


def registered_datasets() -> list[str]:
    """The names ``load_dataset`` accepts: mtlab's own datasets, then those of outside packages' entry points."""
    return DATASETS.names()


def load_dataset(config: Any, seed: int = 0) -> Dataset:
    """Load the dataset ``config.dataset`` names, as the data config says (``data_dir``, ``download``, ...).

    ``seed`` matters only for datasets drawn at random from their files (``mnist-pairs``). Raises
    :class:`DataError` when the files are missing or damaged.
    """
    if config.dataset not in DATASETS:
        raise ConfigError(f"data.dataset: unknown dataset {config.dataset!r}; known: {registered_datasets()}")
    return config.load(seed)
