"""MLflow (``pip install 'mtlab[mlflow]'``): one experiment per study, a parent run per variant, its seeds nested.

Written with :class:`mlflow.MlflowClient` and ``log_batch`` (no global active run, so runs in flight side by side
stay apart). The default store is an SQLite database in the study directory (``sqlite:///DIR/mlflow.db``, artifacts
in ``DIR/mlartifacts``; see it with ``mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db``) unless
``MLFLOW_TRACKING_URI`` names another. MLflow 3 refuses new plain-file stores (``./mlruns``) by default, hence SQLite.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

from mtlab.trackers import TRACKERS
from mtlab.trackers.base import TrackedRun, Tracker, import_client

# log_batch limits of the MLflow REST API (a remote server refuses larger batches).
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
STATUS = {"done": "FINISHED", "failed": "FAILED", "running": "RUNNING"}


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def _key(name: str) -> str:
    """A metric name MLflow accepts (letters, digits, ``_ - . / space``)."""
    return re.sub(r"[^\w\-. /]", "_", name)


@TRACKERS.register("mlflow")
class MlflowTracker(Tracker):
    extra = "mlflow"

    def __init__(self, experiment: str, destination: str):
        super().__init__(experiment, destination)
        import_client("mlflow", self.extra)
        from mlflow import MlflowClient

        # Schema migrations and store notes go to the log at INFO: not news for a user watching a study.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=destination)

    @classmethod
    def default_destination(cls, directory: Path) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(directory).resolve() / 'mlflow.db'}"

    @classmethod
    def start_advice(cls, destination: str) -> str:
        if destination == os.environ.get("MLFLOW_TRACKING_URI"):
            return ("the store is MLFLOW_TRACKING_URI's: unset it for mtlab's default (an SQLite file beside the "
                    "runs), or name another store with --track-to (export: --to)")
        return ""

    def check(self) -> None:
        self.client.search_experiments(max_results=1)  # a server that does not answer, a store that refuses

    def _artifact_root(self) -> str | None:
        """Artifacts beside an SQLite store (MLflow's default would be ``./mlartifacts`` of the current directory)."""
        if self.destination.startswith("sqlite:///"):
            return (Path(self.destination.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
        return None

    def open_experiment(self, existing: str | None) -> str:
        if existing is not None:
            return existing
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        # The kind tells MLflow's UI to open the experiment on its runs (model training), not on GenAI traces.
        return self.client.create_experiment(self.experiment, artifact_location=self._artifact_root(),
                                             tags={"mlflow.experimentKind": "custom_model_development"})  # fmt: skip

    def open_run(self, run: TrackedRun, parent: str | None, existing: str | None) -> str:
        from mlflow.entities import Param, RunTag

        tags = dict(run.tags)
        if existing is None:
            experiment_id = self.open_experiment(None)
            if parent is not None:
                tags["mlflow.parentRunId"] = parent
            existing = self.client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
        elif self.client.get_run(existing).info.status != "RUNNING":
            self.client.update_run(existing, status="RUNNING")  # trained again (resumed, or a retried failure)
        params = [Param(k, v[:6000]) for k, v in run.params.items()]
        logged = self.client.get_run(existing).data.params
        params = [p for p in params if p.key not in logged]  # a param cannot be logged twice with another value
        tag_list = [RunTag(k, v) for k, v in tags.items()]
        for chunk in _chunks(params, MAX_PARAMS):
            self.client.log_batch(existing, params=chunk)
        for chunk in _chunks(tag_list, MAX_TAGS):
            self.client.log_batch(existing, tags=chunk)
        return existing

    def log_epochs(self, run_id: str, records: list[dict[str, float]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(_key(key), float(value), now, int(record["epoch"]))
            for record in records
            for key, value in record.items()
            if key != "epoch"
        ]
        for chunk in _chunks(metrics, MAX_METRICS):
            self.client.log_batch(run_id, metrics=chunk)

    def log_final(self, run_id: str, values: Mapping[str, float], tags: Mapping[str, str]) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        logged = self.client.get_run(run_id).data.metrics  # final values are logged once (exports are idempotent)
        metrics = [Metric(_key(k), float(v), now, 0) for k, v in values.items() if logged.get(_key(k)) != float(v)]
        for chunk in _chunks(metrics, MAX_METRICS):
            self.client.log_batch(run_id, metrics=chunk, tags=[RunTag(k, v) for k, v in tags.items()])
            tags = {}

    def log_artifact(self, run_id: str, path: Path) -> None:
        self.client.log_artifact(run_id, str(path))

    def end_run(self, run_id: str, status: str, reason: str | None) -> None:
        from mlflow.entities import RunTag

        if reason:
            self.client.log_batch(run_id, tags=[RunTag("reason", reason[:5000]), RunTag("mlflow.note.content", reason)])
        self.client.set_terminated(run_id, status=STATUS[status])
