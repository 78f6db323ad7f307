"""The interface every experiment tracker implements, and the plain data it is given.

A tracker is a *view* of the results store: it never decides anything, it is told (by
:class:`~mtlab.study.tracking.Tracking`, fed by the study driver) to open the study's experiment, open runs (a
variant's parent run, a seed's run nested in it), log epochs with ``step = epoch``, log final values and artifacts,
and end a run with its status. Creating it and its ``check`` happen before anything is trained: a failure there is
one error line, and nothing is trained or written. Every later call may raise (server down, disk full): the caller
turns that into one warning and stops using the tracker; the results store records only what a tracker has
accepted, so the next ``mtlab export`` sends the rest.
"""

from __future__ import annotations

import importlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from mtlab.errors import MtlabError


class TrackerWarning(UserWarning):
    """A tracker failed; the study goes on without it (``mtlab: warning: ...`` on the command line)."""


@dataclass(frozen=True)
class TrackedRun:
    """A run as a tracker shows it: ``variant`` names the parent's group; ``seed`` is None for a variant's parent
    run. ``params`` is the resolved config flattened to dotted keys; ``tags`` are strings."""

    key: str
    name: str
    variant: str
    seed: int | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


class Tracker(ABC):
    """One tracker writing to one ``destination`` (a tracking URI or a directory), for one study ``experiment``.

    Ids a tracker returns are strings the results store keeps, so a later process (a resumed study, an export) can
    reopen the same experiment and runs through ``existing``.
    """

    extra: ClassVar[str]  # the pip extra that installs the client: pip install 'mtlab[<extra>]'

    def __init__(self, experiment: str, destination: str):
        self.experiment = experiment
        self.destination = destination

    @classmethod
    @abstractmethod
    def default_destination(cls, directory: Path) -> str:
        """Where the tracker writes for the study directory ``directory`` when no ``--to`` is given."""

    @classmethod
    def example(cls, directory: Path) -> str:
        """A destination under ``directory`` that works on any machine without a server or an account (the tests
        parametrised over the registry track a small run there); by default :meth:`default_destination`."""
        return cls.default_destination(directory)

    @classmethod
    def start_advice(cls, destination: str) -> str:
        """What the user can do when the tracker cannot start at ``destination`` ('' when its client says it)."""
        return ""

    def check(self) -> None:  # noqa: B027  (a tracker that writes files has nothing to reach before its first run)
        """Reach the destination once, before anything is trained, and raise what the client raises when it cannot
        work there (a store it refuses, a server that does not answer). Creates nothing the study would not."""

    @abstractmethod
    def open_experiment(self, existing: str | None) -> str:
        """Create (or reopen, by the id ``existing``) the study's experiment / project; its id."""

    @abstractmethod
    def open_run(self, run: TrackedRun, parent: str | None, existing: str | None) -> str:
        """Create (or reopen) ``run``, nested in the run ``parent`` when given; log its params and tags; its id."""

    @abstractmethod
    def log_epochs(self, run_id: str, records: list[dict[str, float]]) -> None:
        """Per-epoch records (each with ``epoch``, which is the step) in one batch."""

    @abstractmethod
    def log_final(self, run_id: str, values: Mapping[str, float], tags: Mapping[str, str]) -> None:
        """Final values (test metrics, Δm, rank) and updated tags (status) of a run."""

    @abstractmethod
    def log_artifact(self, run_id: str, path: Path) -> None:
        """A file (``config.yaml``, ``report.html``) kept with the run."""

    @abstractmethod
    def end_run(self, run_id: str, status: str, reason: str | None) -> None:
        """Mark the run ``done`` (finished) or ``failed`` (with its reason)."""

    def close(self) -> None:  # noqa: B027  (most trackers hold nothing to release)
        """Flush and release whatever the tracker holds open."""


def check_directory(destination: str) -> None:
    """Raise the :class:`OSError` that creating files under ``destination`` would raise (a file in the way, no
    permission), without creating anything: the check of a tracker that writes to a directory."""
    path = Path(destination).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise NotADirectoryError(20, "not a directory", str(existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(13, "cannot create files in it", str(existing))


def import_client(module: str, extra: str) -> ModuleType:
    """Import a tracker's client library, or one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MtlabError(f"tracking with {extra} needs its client: pip install 'mtlab[{extra}]'") from None


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"model": {"trunk": {"type": "mlp"}}}`` -> ``{"model.trunk.type": "mlp"}``; lists as JSON, None as null."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat
