"""Experiment trackers: MLflow, TensorBoard and Weights & Biases as live views of a study, and export targets.

The results store stays the source of truth; a tracker shows it where researchers already look. Each tracker is
one module (:mod:`.mlflow`, :mod:`.tensorboard`, :mod:`.wandb`) implementing :class:`~.base.Tracker` and registered
here by name; an outside package adds one through the ``mtlab.trackers`` entry points. Their client libraries are
extras (``pip install 'mtlab[mlflow]'``, ...), imported only when a tracker is used.
:class:`~.tracking.Tracking` feeds them from the study driver (``mtlab run --track``) or from a finished store
(``mtlab export --format mlflow``).
"""

from __future__ import annotations

from mtlab.registry import Registry
from mtlab.trackers.base import Tracker, TrackerWarning

TRACKERS: Registry[type[Tracker]] = Registry(
    "tracker",
    entry_point_group="mtlab.trackers",
    builtins=("mtlab.trackers.mlflow", "mtlab.trackers.tensorboard", "mtlab.trackers.wandb"),
)
"""Trackers by ``--track`` / ``--format`` name (mtlab's own loaded by module name on first use, then plug-ins)."""
register_tracker = TRACKERS.register

__all__ = ["TRACKERS", "Tracker", "TrackerWarning", "register_tracker"]
