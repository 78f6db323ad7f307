"""Typed tasks (:mod:`.base`) and the built-in task types, one module each; importing this package registers them
(in this order, which is the order ``mtlab tasks`` lists them)."""

from mtlab.tasks import multiclass  # noqa: F401, I001  (registers; the classification types first)
from mtlab.tasks import binary, multilabel, regression  # noqa: F401  (registers)
from mtlab.tasks import segmentation, depth, normals  # noqa: F401  (registers; the dense types last)
from mtlab.tasks.base import TASK_TYPES, Direction, MetricTotals, Objective, Task, TaskType, register_task_type

__all__ = ["TASK_TYPES", "Direction", "MetricTotals", "Objective", "Task", "TaskType", "register_task_type"]
