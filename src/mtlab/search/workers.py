"""A search's trials on several workers sharing one Optuna storage, through mtlab's executor service
(:mod:`mtlab.execute`: worker processes on this machine, Ray tasks, or an installed plug-in's executor).

The driver splits the trials still to do among the workers (worker ``i`` of ``n`` runs ``remaining // n`` trials, one
more for the first ``remaining % n``), so together they run exactly the number the spec asks and no trial twice:
each trial is created by the storage with a number of its own (a grid search gives the first ``len(candidates)``
trial numbers one grid point each). A batch whose worker dies is not retried (part of it may have run): trials lost
to a diverged run or a dead worker are made up in a further round. Workers send an event after each trial, and the
driver reports finished trials as it sees them in the storage. Each worker trains with one intra-op thread on a
CPU. TPE sampling on several workers is reproducible per trial but not in order: which worker asks first depends
on timing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mtlab.search.spec import SearchSpec

if TYPE_CHECKING:
    import optuna

    from mtlab.search.trials import TrialRecord


@dataclass
class TrialBatch:
    """A worker's share of a round: ``trials`` trials of ``spec`` on the storage at ``url``."""

    key: int
    spec: SearchSpec
    url: str
    trials: int
    threads: int | None = 1

    def failed(self, reason: str) -> str:
        """What a batch whose worker died returns (its lost trials are made up in the next round)."""
        return reason


def run_trials(batch: TrialBatch, emit: Callable[[object], None]) -> str | None:
    """A worker's job: the batch's trials, an event after each (the driver then reads the storage)."""
    import torch

    from mtlab.search.trials import open_study, trial_objective
    from mtlab.train.fit import TrainingDiverged

    if batch.threads is not None:
        torch.set_num_threads(batch.threads)
    study = open_study(batch.spec, batch.url)
    study.optimize(
        trial_objective(batch.spec),
        n_trials=batch.trials,
        catch=(TrainingDiverged,),
        callbacks=[lambda _study, trial: emit(("trial", trial.number))],
    )
    return None


def shares(remaining: int, workers: int) -> list[int]:
    """Trials per worker: ``remaining`` split as evenly as possible, no worker with none."""
    return [n for n in (remaining // workers + (i < remaining % workers) for i in range(workers)) if n > 0]


def run_trial_workers(
    spec: SearchSpec,
    url: str,
    study: optuna.Study,
    target: int,
    *,
    workers: int | str,
    executor: str = "local",
    address: str | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> None:
    """Run trials on ``workers`` workers until ``study`` has ``target`` finished (complete or pruned) trials."""
    import optuna

    from mtlab.execute import create_executor
    from mtlab.search.trials import trial_record

    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    reported = {t.number for t in study.get_trials(deepcopy=False)}

    def report_new(_event: object = None) -> int:
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            if t.number not in reported and t.state.is_finished():
                reported.add(t.number)
                if on_trial is not None:
                    on_trial(trial_record(t))
        return sum(t.state in finished_states for t in trials)

    pool = create_executor(executor, workers=workers, address=address, run_threads=1, work=run_trials, retries=0)
    try:
        finished = report_new()
        while finished < target:
            batches = [TrialBatch(i, spec, url, n) for i, n in enumerate(shares(target - finished, pool.slots))]
            for batch in batches:
                pool.submit(batch)
            for _ in batches:
                pool.wait(report_new)
            before, finished = finished, report_new()
            if finished == before:  # every trial of the round failed: more rounds would fail the same way
                break
    finally:
        pool.close()
