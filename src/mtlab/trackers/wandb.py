"""Weights & Biases (``pip install 'mtlab[wandb]'``): one project per study, runs grouped by variant.

Each seed is a run with ``group`` = its variant and ``job_type`` = ``seed <n>`` (W&B has no nested runs: its
grouping is the parent), plus one run per variant (``job_type`` = ``variant``) holding Δm and rank. Per-epoch
values use ``epoch`` as their x axis (``define_metric``). Offline unless the user is logged in (``WANDB_API_KEY``
or a ``~/.netrc`` entry for the W&B host) or ``WANDB_MODE`` says otherwise: offline runs land in
``DIR/wandb/offline-run-*`` and ``wandb sync DIR/wandb/offline-run-*`` uploads them later.
"""

from __future__ import annotations

import netrc
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtlab.trackers import TRACKERS
from mtlab.trackers.base import TrackedRun, Tracker, check_directory, import_client

MAX_TAG = 64  # W&B refuses longer tags


def logged_in() -> bool:
    """Whether W&B has credentials here (then runs go online, as a logged-in user expects)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in hosts)


@TRACKERS.register("wandb")
class WandbTracker(Tracker):
    extra = "wandb"

    def __init__(self, experiment: str, destination: str):
        super().__init__(experiment, destination)
        self.wandb = import_client("wandb", self.extra)
        self.mode = os.environ.get("WANDB_MODE") or ("online" if logged_in() else "offline")
        self._runs: dict[str, Any] = {}  # id -> the open wandb Run
        self._opening: dict[str, tuple[TrackedRun, bool]] = {}  # id -> what to open it with (lazily), resumed?

    @classmethod
    def default_destination(cls, directory: Path) -> str:
        return str(Path(directory).resolve())

    def check(self) -> None:
        check_directory(self.destination)

    def open_experiment(self, existing: str | None) -> str:
        Path(self.destination).mkdir(parents=True, exist_ok=True)
        return existing or self.experiment

    def open_run(self, run: TrackedRun, parent: str | None, existing: str | None) -> str:
        run_id = existing or uuid.uuid4().hex[:8]  # W&B ids: short, lowercase, unique in the project
        self._opening[run_id] = (run, existing is not None)
        if run.seed is not None:
            self._run(run_id)  # a seed's run shows as soon as it trains; a variant's when its values exist
        return run_id

    def _run(self, run_id: str):
        if run_id in self._runs:
            return self._runs[run_id]
        run, resumed = self._opening.pop(run_id)
        tags = [f"{k}={v}"[:MAX_TAG] for k, v in run.tags.items() if k != "status"]
        opened = self.wandb.init(
            project=self.experiment,
            dir=self.destination,
            mode=self.mode,
            id=run_id,
            resume="allow" if resumed else None,
            name=run.name,
            group=run.variant,
            job_type=f"seed {run.seed}" if run.seed is not None else "variant",
            config={**run.params, **{f"mtlab.{k}": v for k, v in run.tags.items()}},
            tags=tags,
            reinit="create_new",  # runs of several groups in flight side by side
            settings=self.wandb.Settings(
                silent=True, console="off", save_code=False, disable_git=True, x_disable_stats=True
            ),
        )
        opened.define_metric("epoch")
        opened.define_metric("*", step_metric="epoch")
        self._runs[run_id] = opened
        return opened

    def log_epochs(self, run_id: str, records: list[dict[str, float]]) -> None:
        run = self._run(run_id)
        for record in records:
            run.log({k: float(v) for k, v in record.items()})

    def log_final(self, run_id: str, values: Mapping[str, float], tags: Mapping[str, str]) -> None:
        run = self._run(run_id)
        run.summary.update({k: float(v) for k, v in values.items()})
        if tags:
            run.config.update({f"mtlab.{k}": v for k, v in tags.items()}, allow_val_change=True)

    def log_artifact(self, run_id: str, path: Path) -> None:
        # A file in the run's directory is kept (and uploaded) with it; a copy, so the study's file stays its own.
        shutil.copyfile(path, Path(self._run(run_id).dir) / path.name)

    def end_run(self, run_id: str, status: str, reason: str | None) -> None:
        run = self._run(run_id)
        run.summary["status"] = status
        if reason:
            run.summary["reason"] = reason
        run.finish(exit_code=0 if status == "done" else 1)
        del self._runs[run_id]

    def close(self) -> None:
        for run in self._runs.values():
            run.finish()
        self._runs.clear()
