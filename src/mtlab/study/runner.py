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

from mtlab import atomic, environment
from mtlab.errors import MtlabError
from mtlab.study.checks import validate_study
from mtlab.study.spec import RunSpec, StudySpec, expand
from mtlab.study.store import ResultStore
from mtlab.train.device import resolve_device
from mtlab.train.fit import FitObserver
from mtlab.train.replicas import stacking_pays
from mtlab.train.run import train_runs

STORE_NAME = "results.sqlite"


class StudyObserver:
    """Receives study progress; no-op hooks. ``run_observer`` may return a :class:`FitObserver` for the run."""

    def on_study_start(self, total: int, done: int, todo: int) -> None:
        """``total`` runs in the study, ``done`` already finished, ``todo`` about to be trained."""

    def run_observer(self, run: RunSpec) -> FitObserver | None:
        return None

    def group_observers(self, runs: list[RunSpec]) -> list[FitObserver | None]:
        """Observers for runs trained together (by default each run's own ``run_observer``)."""
        return [self.run_observer(run) for run in runs]

    def on_run_end(self, run: RunSpec, status: str, reason: str | None) -> None:
        """Called after each trained run with its final status."""


@dataclass
class StudyResult:
    directory: Path
    total: int
    trained: int
    failed: list[tuple[str, str]]


def seed_groups(runs: list[RunSpec], size: int, group_seeds: str = "auto") -> list[list[RunSpec]]:
    """Consecutive runs whose configs differ only in seed, in chunks of at most ``size`` (order kept).

    ``group_seeds="off"``, and ``"auto"`` for nets that train faster one by one on their device
    (:func:`~mtlab.train.replicas.stacking_pays`), give one run per group, so each run is recorded as it finishes.
    """
    groups: list[list[RunSpec]] = []
    key = None
    for run in runs:
        run_key = run.config.model_dump_json(exclude={"seed"})
        limit = size
        if group_seeds == "off" or (
            group_seeds == "auto" and not stacking_pays(run.config, resolve_device(run.config.train.device))
        ):
            limit = 1
        if groups and run_key == key and len(groups[-1]) < limit:
            groups[-1].append(run)
        else:
            groups.append([run])
        key = run_key
    return groups


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
    group_seeds: str = "auto",
    group_size: int = 10,
    command: list[str] | None = None,
    observer: StudyObserver | None = None,
    train: Callable[..., list[object]] = train_runs,
) -> StudyResult:
    """Train every run of ``spec`` (under ``budget``) that is not done yet; results go to ``directory``.

    With ``group_seeds="auto"`` the runs of a variant that differ only in seed are trained together, up to
    ``group_size`` at a time (:func:`~mtlab.train.run.train_runs`; smaller if memory is short), where stacking
    them is faster on the device (dense nets; on CUDA every net); ``"on"`` stacks them for every architecture;
    ``"off"`` trains one run at a time. Either way each run is stored, resumed and failed on its own.
    """
    if group_seeds not in ("auto", "on", "off"):
        raise MtlabError(f"group_seeds must be 'auto', 'on' or 'off', not {group_seeds!r}")
    observer = observer or StudyObserver()
    directory = Path(directory)
    runs = expand(spec, budget, overrides)
    validate_study(spec, runs, directory)  # before anything is written: a bad spec or missing data costs seconds
    by_id = {r.run_id: r for r in runs}
    with StudyLock(directory), ResultStore(directory / STORE_NAME) as store:
        atomic.write_text(directory / "study.yaml", yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
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
        for group in seed_groups([by_id[r] for r in todo], group_size, group_seeds):
            run_dirs = [directory / "runs" / run.run_id for run in group]
            for run, run_dir in zip(group, run_dirs, strict=True):
                store.mark_running(run.run_id, run_dir.relative_to(directory))
            try:
                outcomes = train(
                    [run.config for run in group],
                    run_dirs,
                    argv=command or [],
                    observers=observer.group_observers(group),
                    overwrite=True,
                    stacking="always",  # seed_groups has already decided where stacking pays
                )
            except MtlabError:
                raise  # the user's to fix (data, config): every other run would fail the same way
            except Exception as e:  # a crash fails the runs it hit; the study goes on
                outcomes = [e] * len(group)
                for run_dir in run_dirs:
                    run_dir.mkdir(parents=True, exist_ok=True)
                    (run_dir / "error.txt").write_text(traceback.format_exc())
            reasons = [f"{type(o).__name__}: {o}" if isinstance(o, BaseException) else None for o in outcomes]
            # One transaction for the group: after a kill, a resumed study regroups exactly the same seeds, so its
            # numbers equal an uninterrupted study's (grouped and solo training agree only to float tolerance).
            with store.atomic():
                for run, outcome, reason in zip(group, outcomes, reasons, strict=True):
                    if reason is not None:
                        store.record_failed(run.run_id, reason)
                    else:
                        env = environment.describe(outcome.device)
                        store.record_done(run.run_id, outcome.result, parameters=outcome.parameters, environment=env)
            for run, reason in zip(group, reasons, strict=True):
                if reason is not None:
                    failed.append((run.run_id, reason))
                observer.on_run_end(run, "failed" if reason else "done", reason)
    return StudyResult(directory=directory, total=len(runs), trained=len(todo), failed=failed)
