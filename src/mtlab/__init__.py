"""mtlab: run, compare and explain multi-task learning experiments.

The public library is what ``__all__`` lists - the step object for a training loop of one's own (``mtlab.Weighting``,
``docs/own-loop.md``), ``train_run``, the study runner, the registries and their ``register_*`` decorators, the task
types, the functional ``aggregate`` - and the documentation site's API reference documents exactly these names;
everything else is internal and may change. Each name is imported on first use, so ``import mtlab`` loads nothing
heavy. This ``__init__`` is the public façade, at the top of the layers: mtlab's own modules read the version from
``mtlab.version``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

PUBLIC: dict[str, str] = {
    # a training loop of one's own
    "Weighting": "mtlab.train.weighting",
    "Half": "mtlab.train.weighting",
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
    "METHODS": "mtlab.weighting.base",
    "register_method": "mtlab.weighting.base",
    "registered_methods": "mtlab.weighting.base",
    # registries and plug-ins
    "Registry": "mtlab.registry",
    "DATASETS": "mtlab.config.base",
    "TRUNKS": "mtlab.config.base",
    "MODEL_KINDS": "mtlab.config.base",
    "register_dataset": "mtlab.config.base",
    "register_trunk": "mtlab.config.base",
    "register_model_kind": "mtlab.config.base",
    "EXECUTORS": "mtlab.execute",
    "register_executor": "mtlab.execute",
    "TRACKERS": "mtlab.trackers",
    "register_tracker": "mtlab.trackers",
}
"""Public name -> the module that defines it (the API reference documents each at that path)."""

__all__ = ["PUBLIC", "__version__", *PUBLIC]

if TYPE_CHECKING:
    from mtlab.train.weighting import Half, Weighting  # noqa: F401  (for type checkers; public names in PUBLIC)
    from mtlab.version import __version__


def __getattr__(name: str) -> Any:
    """Each public name is imported from its module on first use (``import mtlab`` itself loads nothing)."""
    if name == "__version__":
        from mtlab.version import __version__

        return __version__
    if name in PUBLIC:
        return getattr(import_module(PUBLIC[name]), name)
    raise AttributeError(f"module 'mtlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *PUBLIC, "__version__"})
