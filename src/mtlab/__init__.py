"""mtlab: run, compare and explain multi-task learning experiments.

The public library is what ``__all__`` lists (the documentation site's API reference documents exactly these
names); everything else is internal and may change. Each name is imported on first use, so ``import mtlab`` loads
nothing heavy (no torch until a name that needs it is asked for).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

PUBLIC: dict[str, str] = {
    # runs and studies
    "load_config": "mtlab.config.load",
    "parse_config": "mtlab.config.load",
    "train_run": "mtlab.train.run",
    "find_study": "mtlab.study.catalog",
    "run_study": "mtlab.study.runner",
    # task types
    "Task": "mtlab.tasks.base",
    "TaskType": "mtlab.tasks.base",
    "TASK_TYPES": "mtlab.tasks.base",
    "register_task_type": "mtlab.tasks.base",
    # weighting methods
    "aggregate": "mtlab.weighting.functional",
    "LossMethod": "mtlab.weighting.base",
    "GradientMethod": "mtlab.weighting.base",
    "MethodOptions": "mtlab.weighting.base",
    "register_method": "mtlab.weighting.base",
    "registered_methods": "mtlab.weighting.base",
    # registries and plug-ins
    "Registry": "mtlab.registry",
    "DATASETS": "mtlab.config.base",
    "TRUNK_TYPES": "mtlab.config.base",
    "MODEL_KINDS": "mtlab.config.base",
    "register_dataset": "mtlab.config.base",
    "register_trunk_type": "mtlab.config.base",
    "register_model_kind": "mtlab.config.base",
    "EXECUTORS": "mtlab.execute",
    "TRACKERS": "mtlab.trackers",
}
"""Public name -> the module that defines it (the API reference documents each at that path)."""

__all__ = ["PUBLIC", "__version__", *PUBLIC]


def __getattr__(name: str) -> Any:
    """Each public name is imported from its module on first use."""
    if name in PUBLIC:
        return getattr(import_module(PUBLIC[name]), name)
    raise AttributeError(f"module 'mtlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(PUBLIC))
