"""Run a study: expand it, store every run, train the ones not done yet, and survive being killed.

Layout of a study directory::

    results.sqlite     the results store (:mod:`mtlab.study.store`)
    study.yaml         the spec as run
    runs/<run_id>/     one run directory per run (config, history, metrics, checkpoint; see :mod:`mtlab.train.rundir`)
    .lock              held while a driver is active; a second driver refuses to start

Resume is the default: running the same command again trains only the runs that are not ``done`` (a run a killed
driver left ``running`` restarts from scratch, with the same seed, so the final numbers equal an uninterrupted
study's; ^C and SIGTERM put the runs in flight back to ``pending`` on the way out). A command that defines the study
otherwise is refused unless it says ``redefine`` (:mod:`mtlab.study.definition`). A run that diverges or raises is
stored as ``failed`` with its reason and the study goes on; ``retry_failed`` trains those again. Problems the user
must fix (missing data, a bad config) stop the study.

Seed groups train on an executor (:mod:`mtlab.execute`: in this process, a pool of worker processes, or a
Ray cluster) and come back as plain results; this process alone writes the store and the run directories.
"""

from __future__ import annotations

import io
import shutil
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from mtlab import atomic, environment
from mtlab.data.batches import Normalizer
from mtlab.errors import MtlabError
from mtlab.execute import Executor, create_executor
from mtlab.execute.local import LocalExecutor
from mtlab.execute.work import Event, GroupResult, GroupTask, RunResult
from mtlab.study.checks import validate_study
from mtlab.study.definition import as_json, definition_change, superseded_entry
from mtlab.study.lock import StudyLock
from mtlab.study.spec import RunSpec, StudySpec, expand
from mtlab.study.store import DATA_NOTES, ResultStore
from mtlab.train.device import resolve_device
from mtlab.train.fit import FitObserver, FitResult
from mtlab.train.replicas import stacking_pays
from mtlab.train.rundir import RunDirectory

STORE_NAME = "results.sqlite"


class StudyObserver:
    """Receives study progress; no-op hooks. ``run_observer`` may return a :class:`FitObserver` for the run."""

    def on_executor(self, description: dict[str, Any]) -> None:
        """Where the runs will train (:meth:`~mtlab.execute.Executor.describe`: kind, workers, threads)."""

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


def seed_groups(
    runs: list[RunSpec], size: int, group_seeds: str = "auto", device: str | None = None
) -> list[list[RunSpec]]:
    """Consecutive runs whose configs differ only in seed, in chunks of at most ``size`` (order kept).

    ``group_seeds="off"``, and ``"auto"`` for nets that train faster one by one on their device
    (:func:`~mtlab.train.replicas.stacking_pays`), give one run per group, so each run is recorded as it finishes.
    ``device`` is the kind the workers train on (default: what each config resolves to on this machine).
    """
    groups: list[list[RunSpec]] = []
    key = None
    for run in runs:
        run_key = run.config.model_dump_json(exclude={"seed"})
        limit = size
        where = torch.device(device) if device else resolve_device(run.config.train.device)
        if group_seeds == "off" or (group_seeds == "auto" and not stacking_pays(run.config, where)):
            limit = 1
        if groups and run_key == key and len(groups[-1]) < limit:
            groups[-1].append(run)
        else:
            groups.append([run])
        key = run_key
    return groups


def run_study(
    spec: StudySpec,
    directory: Path,
    *,
    budget: str | None = None,
    overrides: dict[str, Any] | None = None,
    retry_failed: bool = False,
    redefine: bool = False,
    group_seeds: str = "auto",
    group_size: int = 10,
    command: list[str] | None = None,
    observer: StudyObserver | None = None,
    executor: str = "local",
    workers: int | str = 1,
    address: str | None = None,
    train: Callable[..., list[object]] | None = None,
    track: Sequence[str] = (),
    track_to: str | None = None,
) -> StudyResult:
    """Train every run of ``spec`` (under ``budget``) that is not done yet; results go to ``directory``.

    With ``group_seeds="auto"`` the runs of a variant that differ only in seed are trained together, up to
    ``group_size`` at a time (:func:`~mtlab.train.run.train_runs`; smaller if memory is short), where stacking
    them is faster on the device (dense nets; on CUDA every net); ``"on"`` stacks them for every architecture;
    ``"off"`` trains one run at a time. Either way each run is stored, resumed and failed on its own.

    ``executor`` / ``workers`` / ``address`` choose where groups train (:func:`~mtlab.execute.create_executor`:
    in this process, ``workers`` processes on this machine, or a Ray cluster); this process stays the only writer of
    the store and the run directories. ``train`` replaces :func:`~mtlab.train.run.train_runs` in this process (tests).

    A directory that holds a study defined otherwise (another study, budget, overrides or spec:
    :mod:`mtlab.study.definition`) is refused, unless ``redefine``: this definition then replaces it and the stored
    runs stay in the store (finished ones too, out of the report's numbers; runs both definitions share are kept as
    they are). Stopped by ^C or SIGTERM, the runs in flight go back to ``pending`` and the exception is raised again
    with how many finished runs the store keeps (``"12 runs kept"``).

    ``track``: experiment trackers (``mlflow``, ``tensorboard``, ``wandb``; :mod:`mtlab.trackers`) this process
    sends each run to as it trains, at ``track_to`` or each one's default destination in ``directory``. The
    variants' Δm, ranks and the report follow with :func:`~mtlab.report.tracking.export_study` (``mtlab run``
    calls it after writing the report).
    """
    if group_seeds not in ("auto", "on", "off"):
        raise MtlabError(f"group_seeds must be 'auto', 'on' or 'off', not {group_seeds!r}")
    observer = observer or StudyObserver()
    directory = Path(directory)
    runs = expand(spec, budget, overrides)
    validate_study(spec, runs, directory)  # before anything is written: a bad spec or missing data costs seconds
    by_id = {r.run_id: r for r in runs}
    budget = budget or spec.default_budget
    if (directory / STORE_NAME).is_file() and not redefine:  # refused before the lock is touched: nothing written
        with ResultStore(directory / STORE_NAME) as store:
            _check_definition(store, directory, spec, budget, overrides, runs)
    trackers = {}
    if track:  # a missing client is the user's error before anything is written
        from mtlab.study.tracking import create_trackers, experiment_name

        info = {"name": spec.name, "budget": budget}
        trackers = create_trackers(track, experiment_name(info), directory, track_to)
    with StudyLock(directory), ResultStore(directory / STORE_NAME) as store:
        if not redefine:  # again under the lock: another driver may have written the store since
            _check_definition(store, directory, spec, budget, overrides, runs)
        info, stored = store.info(), store.statuses()
        change = definition_change(info, stored, spec, budget, overrides, runs)
        superseded = [*info.get("superseded", []), superseded_entry(info, stored, set(by_id))] if change else None
        atomic.write_text(directory / "study.yaml", yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
        described = environment.describe()
        with store.atomic():  # the definition and its runs together: a kill leaves the old pair or the new
            store.set_info(
                name=spec.name,
                description=spec.description,
                budget=budget,
                overrides=as_json(dict(overrides or {})),
                spec=spec.model_dump(mode="json"),
                command=command or [],
                environment=described,
                **({"superseded": superseded} if superseded else {}),
            )
            store.sync_runs(runs)
        tracking = None
        if trackers:
            from mtlab.study.tracking import Tracking

            tracking = Tracking(trackers, store, directory)
            observer = tracking.observer(observer)
        todo = store.runs_to_do(retry_failed=retry_failed)
        observer.on_study_start(len(runs), len(runs) - len(store.runs_to_do(retry_failed=True)), len(todo))
        failed: list[tuple[str, str]] = []
        if todo:  # start workers only when there is something to train
            run_threads = max(r.config.train.threads or 1 for r in runs)
            pool = (
                create_executor(executor, workers=workers, address=address, run_threads=run_threads)
                if train is None
                else LocalExecutor(train)
            )
            try:
                store.set_info(executor=pool.describe())
                store.append_info("timings", environment.timing_context(pool.describe()))  # what times depend on
                observer.on_executor(pool.describe())
                groups = seed_groups([by_id[r] for r in todo], group_size, group_seeds, device=pool.device)
                failed = _train_groups(groups, directory, store, pool, observer, command or [])
            except KeyboardInterrupt as stop:  # ^C, or SIGTERM (the command line raises it as a KeyboardInterrupt)
                kept = store.release_running()
                raise type(stop)(f"{kept} run{'s' if kept != 1 else ''} kept") from None
            finally:
                pool.close()
        if tracking is not None:
            tracking.close()
    return StudyResult(directory=directory, total=len(runs), trained=len(todo), failed=failed)


def _check_definition(
    store: ResultStore,
    directory: Path,
    spec: StudySpec,
    budget: str | None,
    overrides: dict[str, Any] | None,
    runs: list[RunSpec],
) -> None:
    """Refuse a command whose definition differs from the one ``store`` holds (:mod:`mtlab.study.definition`)."""
    change = definition_change(store.info(), store.statuses(), spec, budget, overrides, runs, store.first_config())
    if change is not None:
        raise MtlabError(
            f"{directory}: {change}; choose another --out for this one, or add --redefine to make it the "
            "definition of this directory (the stored runs are kept)"
        )


def _train_groups(
    groups: list[list[RunSpec]],
    directory: Path,
    store: ResultStore,
    executor: Executor,
    observer: StudyObserver,
    argv: list[str],
) -> list[tuple[str, str]]:
    """Keep ``executor.slots`` groups in flight; record each group as it finishes. Returns the failed runs."""
    queue = deque(groups)
    in_flight: dict[int, tuple[list[RunSpec], dict[str, FitObserver | None]]] = {}
    failed: list[tuple[str, str]] = []

    def forward(event: Event) -> None:
        # Progress of a run in flight to its observer (late events of a finished group are dropped).
        target = in_flight.get(event.task, ((), {}))[1].get(event.run_id)
        if target is None:
            return
        if event.kind == "start":
            target.on_fit_start(event.data["epochs"], event.data["batches"])
        elif event.kind == "batch":
            target.on_batch_end(event.data["epoch"], event.data["batch"])
        elif event.kind == "epoch":
            target.on_epoch_end(event.data["record"])

    key = 0
    while queue or in_flight:
        while queue and len(in_flight) < executor.slots:
            group = queue.popleft()
            with store.atomic():
                for run in group:
                    store.mark_running(run.run_id, Path("runs") / run.run_id)
            ids = [run.run_id for run in group]
            observers = dict(zip(ids, observer.group_observers(group), strict=True))
            in_flight[key] = (group, observers)
            executor.submit(
                GroupTask(key, ids, [r.config.model_dump(mode="json") for r in group], executor.threads, argv)
            )
            key += 1
        result = executor.wait(forward)
        group, _ = in_flight.pop(result.key)
        if result.user_error is not None:
            raise MtlabError(result.user_error)  # the user's to fix (data, config): every other run would fail too
        reasons = record_group(group, result, directory, store, argv)
        for run, reason in zip(group, reasons, strict=True):
            if reason is not None:
                failed.append((run.run_id, reason))
            observer.on_run_end(run, "failed" if reason else "done", reason)
    return failed


def record_group(
    group: list[RunSpec], result: GroupResult, directory: Path, store: ResultStore, argv: list[str]
) -> list[str | None]:
    """Write the run directories of a finished group, then record it in the store in one transaction.

    The store is written last: a driver killed while writing a run directory leaves the run ``running`` in the store,
    so a resume trains it again and never counts a half-written directory as finished. Returns each run's failure
    reason (None for a finished run).
    """
    by_id = {r.run_id: r for r in result.runs}
    outcomes = [by_id[run.run_id] for run in group]
    fits = [write_run_directory(directory / "runs" / run.run_id, run, outcome, argv) for run, outcome in
            zip(group, outcomes, strict=True)]  # fmt: skip
    # One transaction for the group: after a kill, a resumed study regroups exactly the same seeds, so its
    # numbers equal an uninterrupted study's (grouped and solo training agree only to float tolerance).
    known = store.info().get(DATA_NOTES) or []
    notes = list(dict.fromkeys([*known, *(n for o in outcomes if o.reason is None for n in o.extras.get("notes", []))]))
    with store.atomic():
        for run, outcome, fit in zip(group, outcomes, fits, strict=True):
            if outcome.reason is not None:
                store.record_failed(run.run_id, outcome.reason)
            else:
                store.record_done(run.run_id, fit, parameters=outcome.parameters, environment=outcome.environment)
        if notes != known:  # what the data decided (a task's classes found in its column), for the report header
            store.set_info(**{DATA_NOTES: notes})
    return [outcome.reason for outcome in outcomes]


def write_run_directory(path: Path, run: RunSpec, outcome: RunResult, argv: list[str]) -> FitResult | None:
    """A fresh run directory from a worker's result (:mod:`mtlab.train.rundir`); the run's FitResult if it finished."""
    if path.exists():
        shutil.rmtree(path)  # what an interrupted or failed earlier attempt left
    run_dir = RunDirectory(path)
    run_dir.start(run.config, argv=argv, environment=outcome.environment, origin=outcome.origin)
    if outcome.reason is not None:
        run_dir.fail(outcome.reason)
        if outcome.traceback:
            (path / "error.txt").write_text(outcome.traceback)
        return None
    checkpoint = torch.load(io.BytesIO(outcome.checkpoint), map_location="cpu", weights_only=True)
    fit = FitResult(**outcome.summary, normalizer=Normalizer(**checkpoint["normalizer"]))
    history = run_dir.observer()
    for record in fit.history:
        history.on_epoch_end(record)
    run_dir.finish(fit, state_dict=checkpoint["state_dict"], extras=outcome.extras)
    return fit
