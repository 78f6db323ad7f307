"""What crosses the boundary between the study driver and a worker: a task, progress events, and the results.

Everything here is plain picklable data (configs as JSON-ready dicts, checkpoints as ``torch.save`` bytes), so the
same task runs in the driver's own process, in a pool worker on this machine, or in a Ray task on another machine.
:func:`run_group` is the worker's whole job: it decides threads and device, trains the group with
:func:`~mtlab.train.run.train_runs`, and returns one :class:`RunResult` per run. It writes nothing to disk: the
driver writes the run directories and the store (one writer; workers need not share its filesystem).
"""

from __future__ import annotations

import io
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mtlab.errors import MtlabError


@dataclass
class GroupTask:
    """Runs that a worker trains together (seeds of one variant; see :func:`~mtlab.study.runner.seed_groups`).

    ``configs`` are resolved run configs (``RunConfig.model_dump(mode="json")``); ``threads`` the intra-op threads
    the worker uses (``None``: torch's default; a config's own ``train.threads`` wins).
    """

    key: int
    run_ids: list[str]
    configs: list[dict[str, Any]]
    threads: int | None = None
    argv: list[str] = field(default_factory=list)

    def failed(self, reason: str) -> GroupResult:
        """The result of this task when its worker could not finish it (every run failed for ``reason``)."""
        return failed_group(self, reason)


@dataclass
class Event:
    """Progress of one run, sent by the worker as it trains: ``kind`` is ``start`` (data: epochs, batches, worker),
    ``batch`` (epoch, batch) or ``epoch`` (the history record)."""

    task: int
    run_id: str
    kind: str
    data: dict[str, Any]


@dataclass
class RunResult:
    """One trained run. ``reason`` is None for a finished run, else why it failed (``traceback`` if it raised);
    ``summary`` holds the :class:`~mtlab.train.fit.FitResult` fields but the normaliser, which travels in
    ``checkpoint`` (``torch.save`` of ``{"state_dict", "normalizer"}``) with the selected weights."""

    run_id: str
    reason: str | None = None
    traceback: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    checkpoint: bytes = b""
    parameters: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    origin: str = ""
    environment: dict[str, Any] = field(default_factory=dict)


@dataclass
class GroupResult:
    """What a worker returns for a task: its runs' results, or ``user_error`` (a problem the user must fix, such as
    missing data: every other run would fail the same way, so the driver stops the study with it)."""

    key: int
    runs: list[RunResult]
    user_error: str | None = None


def failed_group(task: GroupTask, reason: str, trace: str | None = None) -> GroupResult:
    """Every run of ``task`` failed for one ``reason`` (a crash, or a worker that died)."""
    return GroupResult(task.key, [RunResult(run_id, reason=reason, traceback=trace) for run_id in task.run_ids])


class _Emitter:
    """A :class:`~mtlab.train.fit.FitObserver` that turns one run's progress into events (batch events at most
    ``per_second`` times a second: the display needs no more, and a remote queue should not carry every step)."""

    def __init__(self, emit: Callable[[Event], None], task: int, run_id: str, worker: str, per_second: float = 4.0):
        self.emit, self.task, self.run_id, self.worker = emit, task, run_id, worker
        self.interval = 1.0 / per_second
        self.last = 0.0

    def _send(self, kind: str, data: dict[str, Any]) -> None:
        self.emit(Event(self.task, self.run_id, kind, data))

    def on_fit_start(self, epochs: int, batches_per_epoch: int) -> None:
        self._send("start", {"epochs": epochs, "batches": batches_per_epoch, "worker": self.worker})

    def on_batch_end(self, epoch: int, batch: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._send("batch", {"epoch": epoch, "batch": batch})

    def on_epoch_end(self, record: dict[str, float]) -> None:
        self._send("epoch", {"record": dict(record)})


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_group(
    task: GroupTask, emit: Callable[[Event], None] | None = None, train: Callable[..., list] | None = None
) -> GroupResult:
    """Train the runs of ``task`` together and return their results (the worker side of every executor).

    Diverged runs and crashes come back as failed runs with their reason; a :class:`~mtlab.errors.MtlabError` (the
    user's to fix) comes back as ``user_error``. Nothing is written to disk. ``train`` replaces
    :func:`~mtlab.train.run.train_runs` (same signature; tests inject faults with it).
    """
    import torch

    from mtlab import environment
    from mtlab.config.schema import RunConfig
    from mtlab.train.fit import FitObserver, TrainingDiverged
    from mtlab.train.run import train_runs

    if task.threads is not None:
        torch.set_num_threads(task.threads)
    worker = worker_name()
    emit = emit or (lambda event: None)
    train = train or train_runs

    class Observer(_Emitter, FitObserver):
        pass

    try:
        configs = [RunConfig.model_validate(c) for c in task.configs]
        observers = [Observer(emit, task.key, run_id, worker) for run_id in task.run_ids]
        # The driver has already decided where stacking pays (seed_groups): a group of several runs is stacked.
        outcomes = train(configs, [None] * len(configs), argv=task.argv, observers=observers, stacking="always")
    except MtlabError as e:
        return GroupResult(task.key, [], user_error=str(e))
    except Exception as e:  # a crash fails the runs it hit; the study goes on
        return failed_group(task, f"{type(e).__name__}: {e}", traceback.format_exc())
    results = []
    for run_id, outcome in zip(task.run_ids, outcomes, strict=True):
        if isinstance(outcome, TrainingDiverged):
            results.append(RunResult(run_id, reason=f"{type(outcome).__name__}: {outcome}"))
            continue
        fit = outcome.result
        buffer = io.BytesIO()
        state = {k: v.detach().cpu() for k, v in outcome.model.state_dict().items()}
        normalizer = {"scale": fit.normalizer.scale.cpu(), "shift": fit.normalizer.shift.cpu()}
        torch.save({"state_dict": state, "normalizer": normalizer}, buffer)
        env = environment.describe(outcome.device)
        env["worker"] = worker
        results.append(
            RunResult(
                run_id,
                summary={
                    "history": fit.history,
                    "best_epoch": fit.best_epoch,
                    "stopped_early": fit.stopped_early,
                    "test": fit.test,
                    "confusion": fit.confusion,
                    "val": fit.val,
                    "seconds": fit.seconds,
                },
                checkpoint=buffer.getvalue(),
                parameters=outcome.parameters,
                extras=outcome.extras,
                origin=outcome.origin,
                environment=env,
            )
        )
    return GroupResult(task.key, results)
