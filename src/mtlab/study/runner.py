"""Run a study: expand it, store every run, train the ones not done yet, and survive being killed.

Layout of a study directory::

    results.sqlite     the results store (:mod:`mtlab.study.store`)
    study.yaml         the spec as run
    runs/<run_id>/     one run directory per run (config, history, metrics, checkpoint; see :mod:`mtlab.rundir`)
    .lock              held while a driver is active; a second driver refuses to start

Resume is the default: running the same command again trains only the runs that are not ``done`` (a run a killed
driver left ``running`` restarts from scratch, with the same seed, so the final numbers equal an uninterrupted
study's). A run that diverges or raises is stored as ``failed`` with its reason and the study goes on;
``retry_failed`` trains those again. Problems the user must fix (missing data, a bad config) stop the study.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mtlab import environment
from mtlab.errors import MtlabError
from mtlab.study.spec import RunSpec, StudySpec, expand
from mtlab.study.store import ResultStore
from mtlab.train.fit import FitObserver
from mtlab.train.run import train_run

STORE_NAME = "results.sqlite"


class StudyObserver:
    """Receives study progress; no-op hooks. ``run_observer`` may return a :class:`FitObserver` for the run."""

    def on_study_start(self, total: int, done: int, todo: int) -> None:
        """``total`` runs in the study, ``done`` already finished, ``todo`` about to be trained."""

    def run_observer(self, run: RunSpec) -> FitObserver | None:
        return None

    def on_run_end(self, run: RunSpec, status: str, reason: str | None) -> None:
        """Called after each trained run with its final status."""


@dataclass
class StudyResult:
    directory: Path
    total: int
    trained: int
    failed: list[tuple[str, str]]


class StudyLock:
    """An exclusive advisory lock on ``<dir>/.lock`` (``flock``: released by the kernel even on ``kill -9``)."""

    def __init__(self, directory: Path):
        self.path = directory / ".lock"
        self.file = None

    def __enter__(self) -> StudyLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise MtlabError(
                f"{self.path.parent}: study directory is in use by {holder}; wait for it or stop it first"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"mtlab pid {os.getpid()}")
        self.file.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self.file is not None:
            self.file.truncate(0)
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


def run_study(
    spec: StudySpec,
    directory: Path,
    *,
    budget: str | None = None,
    overrides: dict[str, Any] | None = None,
    retry_failed: bool = False,
    command: list[str] | None = None,
    observer: StudyObserver | None = None,
    train: Callable[..., object] = train_run,
) -> StudyResult:
    """Train every run of ``spec`` (under ``budget``) that is not done yet; results go to ``directory``."""
    observer = observer or StudyObserver()
    directory = Path(directory)
    runs = expand(spec, budget, overrides)
    by_id = {r.run_id: r for r in runs}
    with StudyLock(directory), ResultStore(directory / STORE_NAME) as store:
        (directory / "study.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
        store.set_info(
            name=spec.name,
            description=spec.description,
            budget=budget or spec.default_budget,
            overrides=overrides or {},
            spec=spec.model_dump(mode="json"),
            command=command or [],
            environment=environment.describe(),
        )
        store.sync_runs(runs)
        todo = store.runs_to_do(retry_failed=retry_failed)
        observer.on_study_start(len(runs), len(runs) - len(store.runs_to_do(retry_failed=True)), len(todo))
        failed: list[tuple[str, str]] = []
        for run_id in todo:
            run = by_id[run_id]
            run_dir = directory / "runs" / run_id
            store.mark_running(run_id, run_dir.relative_to(directory))
            try:
                outcome = train(
                    run.config, run_dir, argv=command or [], observer=observer.run_observer(run), overwrite=True
                )
            except MtlabError:
                raise  # the user's to fix (data, config): every other run would fail the same way
            except Exception as e:  # a diverged or crashed run fails alone; the study goes on
                reason = f"{type(e).__name__}: {e}"
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "error.txt").write_text(traceback.format_exc())
                store.record_failed(run_id, reason)
                failed.append((run_id, reason))
                observer.on_run_end(run, "failed", reason)
                continue
            env = environment.describe(outcome.device)
            store.record_done(run_id, outcome.result, parameters=outcome.parameters, environment=env)
            observer.on_run_end(run, "done", None)
    return StudyResult(directory=directory, total=len(runs), trained=len(todo), failed=failed)
