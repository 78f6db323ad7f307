"""Datasets as whole tensors: find, verify and parse the raw files, then hold both splits with one label per task.

``load_dataset(config.data, seed)`` is the entry point (:mod:`.catalog`). Each dataset is one module owning its
options, files and loader (:mod:`.mnist`, :mod:`.fashion`, :mod:`.celeba`, ...; :mod:`.builtin` imports them all);
:mod:`.sources` says what downloadable files must contain, :mod:`.resolve` where they are looked for.

The exports are imported on first use (PEP 562): the config layer imports :mod:`mtlab.data.tasks`, and checking a
config should not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtlab.data.catalog import load_dataset, registered_datasets
    from mtlab.data.dataset import Dataset, Split
    from mtlab.data.tasks import Task

_EXPORTS = {
    "load_dataset": "mtlab.data.catalog",
    "registered_datasets": "mtlab.data.catalog",
    "Dataset": "mtlab.data.dataset",
    "Split": "mtlab.data.dataset",
    "Task": "mtlab.data.tasks",
}

__all__ = ["Dataset", "Split", "Task", "load_dataset", "registered_datasets"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
