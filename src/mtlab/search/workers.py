"""A search's trials on several workers sharing one Optuna storage: processes on this machine or Ray tasks.

The driver splits the trials still to do among the workers (worker ``i`` of ``n`` runs ``remaining // n`` trials, one
more for the first ``remaining % n``), so together they run exactly the number the spec asks and no trial twice:
each trial is created by the storage with a number of its own (a grid search gives the first ``len(candidates)``
trial numbers one grid point each). Trials lost to a diverged run or a dead worker are made up in a further round.
The driver reports finished trials as it sees them in the storage. Each worker trains with one intra-op thread on a
CPU. TPE sampling on several workers is reproducible per trial but not in order: which worker asks first depends
on timing.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable
from typing import TYPE_CHECKING

from mtlab.errors import MtlabError
from mtlab.search.spec import SearchSpec

if TYPE_CHECKING:
    import optuna

    from mtlab.search.run import TrialRecord

POLL_SECONDS = 1.0


def trial_worker(spec: SearchSpec, url: str, trials: int, threads: int | None = 1) -> None:
    """One worker: ``trials`` trials of ``spec`` on the storage at ``url`` (a process or a Ray task)."""
    import torch

    from mtlab.search.run import open_study, trial_objective
    from mtlab.train.fit import TrainingDiverged

    if threads is not None:
        torch.set_num_threads(threads)
    study = open_study(spec, url)
    study.optimize(trial_objective(spec), n_trials=trials, catch=(TrainingDiverged,))


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

    from mtlab.search.run import trial_record
    from mtlab.study.executors import auto_workers

    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    reported = {t.number for t in study.get_trials(deepcopy=False)}

    def report_new() -> int:
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            if t.number not in reported and t.state.is_finished():
                reported.add(t.number)
                if on_trial is not None:
                    on_trial(trial_record(t))
        return sum(t.state in finished_states for t in trials)

    pool = _RayPool(address) if executor == "ray" else None
    count = (pool.slots if pool else auto_workers()) if workers == "auto" else int(workers)
    try:
        finished = report_new()
        while finished < target:
            jobs = [(spec, url, n) for n in shares(target - finished, count)]
            if pool is not None:
                pool.run(jobs, report_new)
            else:
                _run_processes(jobs, report_new)
            before, finished = finished, report_new()
            if finished == before:  # every trial of the round failed: more rounds would fail the same way
                break
    finally:
        if pool is not None:
            pool.close()


def _run_processes(jobs: list[tuple], poll: Callable[[], int]) -> None:
    context = multiprocessing.get_context("spawn")  # a fork of a process with torch threads can deadlock
    processes = [context.Process(target=trial_worker, args=job, daemon=True, name="mtlab-trials") for job in jobs]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            for process in processes:
                process.join(timeout=POLL_SECONDS / len(processes))
            poll()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()


class _RayPool:
    """Trial workers as Ray tasks (one CPU each); the storage must be reachable from the nodes (an RDB URL, or a
    journal file on a filesystem they share)."""

    def __init__(self, address: str | None):
        try:
            import ray
        except ImportError:
            raise MtlabError("--executor ray needs Ray: pip install 'mtlab[ray]'") from None
        self.ray = ray
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            ray.init(address=address, include_dashboard=False, logging_level="warning", log_to_driver=False)
        self.slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.remote = ray.remote(trial_worker).options(num_cpus=1, max_retries=0)

    def run(self, jobs: list[tuple], poll: Callable[[], int]) -> None:
        refs = [self.remote.remote(*job) for job in jobs]
        while refs:
            done, refs = self.ray.wait(refs, num_returns=len(refs), timeout=POLL_SECONDS)
            for ref in done:
                # A dead worker raises here; its trials are made up in the next round.
                with contextlib.suppress(self.ray.exceptions.RayError):
                    self.ray.get(ref)
            poll()

    def close(self) -> None:
        if self.owns_ray:
            self.ray.shutdown()
