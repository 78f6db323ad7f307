"""Run a search with Optuna (Akiba et al., 2019): sample, train, prune on validation, resume, retrain best and worst.

Each trial builds a run config from the space (:mod:`mtlab.search.space`) and trains it with
:func:`~mtlab.train.run.train_run` (validation split held out of the training data), reporting the validation
objective after every epoch so the pruner can stop it early. The trial's value is the objective at the selected
epoch; its test metrics are computed by ``train_run`` but never read. Sampling is TPE (Bergstra et al., 2011)
seeded from the spec, or an exhaustive grid over ``candidates``.

The study lives in an Optuna storage: by default ``<out>/search.sqlite``, or any database URL Optuna accepts, so
several processes or machines can work on one search (each runs ``mtlab search`` with the same ``--storage``). It is
resumable: a rerun counts the finished (complete or pruned) trials and runs only the rest; trials left running by a
process that died stop sending heartbeats and are marked failed, then replaced. A resumed TPE sampler starts a fresh
random stream, so a resumed search is reproducible but not identical to an uninterrupted one.

After the search, for each depth the best and the worst completed trial are retrained from their stored configs
(same seed, so the same numbers as in the search) and evaluated on the test split once - the table of the original
study. Retrained results are cached in ``<out>/retrained.json`` keyed by trial and config.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtlab.config.schema import RunConfig
from mtlab.execute import executor_needs_shared_storage
from mtlab.search.spec import SearchSpec
from mtlab.search.trials import (
    TrialRecord,
    _without_password,
    is_journal,
    open_study,
    trial_objective,
    trial_record,
)
from mtlab.search.workers import run_trial_workers
from mtlab.train.fit import TrainingDiverged
from mtlab.train.run import train_run

if TYPE_CHECKING:
    import optuna


@dataclass
class Retrained:
    """The best or worst completed trial of one depth, trained again and tested once: ``val`` the objective,
    ``test`` the objective's metric on the test split (``test.<task>.<metric>``), ``test_loss`` the task's test
    loss."""

    trial: int
    depth: int
    rank: str
    parameters: int
    architecture: str
    max_width: int
    lr: float
    val: float
    test: float
    test_loss: float
    seconds: float
    config_id: str


@dataclass
class SearchOutcome:
    spec: SearchSpec
    storage: str
    study_name: str
    objective: str
    trials: list[TrialRecord]
    retrained: list[Retrained]
    seconds: float

    @property
    def completed(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.state == "complete"]


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / 'search.sqlite').resolve()}"


def run_search(
    spec: SearchSpec,
    out: Path,
    *,
    storage: str | None = None,
    retrain: bool | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    workers: int | str = 1,
    executor: str = "local",
    address: str | None = None,
) -> SearchOutcome:
    """Run (or resume) ``spec`` until it has ``spec.trials`` finished trials, then retrain best and worst per depth.

    ``storage``: an Optuna storage URL, or a journal file path (default: ``<out>/search.sqlite``, or
    ``<out>/search.journal`` with several workers). ``retrain`` overrides ``spec.retrain`` (processes sharing a
    storage can skip it and leave it to one final run). ``workers`` > 1 (or ``auto``) runs the trials in that many
    worker processes, ``executor="ray"`` as Ray tasks (:mod:`mtlab.search.workers`).
    """
    import optuna

    started = time.perf_counter()
    shared = executor_needs_shared_storage(executor, workers)  # trials run in other processes: a journal they share
    url = storage or (default_journal(out) if shared else default_storage(out))
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)  # the default storage lives in it
    key = spec.objective_key()
    study = open_study(spec, url)
    out.mkdir(parents=True, exist_ok=True)  # only once the storage opened: a bad --storage leaves nothing behind
    target = spec.trials if spec.candidates is None else min(spec.trials, len(spec.candidates))
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def progress(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(trial_record(frozen))

    if is_journal(url):
        fail_orphans(study)
    remaining = target - len(study.get_trials(deepcopy=False, states=finished))
    if remaining > 0 and shared:
        run_trial_workers(spec, url, study, target, workers=workers, executor=executor, address=address,
                          on_trial=on_trial)  # fmt: skip
    elif remaining > 0:
        study.optimize(
            trial_objective(spec),
            n_trials=remaining,
            callbacks=[optuna.study.MaxTrialsCallback(target, states=finished), progress],
            catch=(TrainingDiverged,),
        )
    trials = [trial_record(t) for t in study.get_trials(deepcopy=False)]
    outcome = SearchOutcome(spec, _without_password(url), study.study_name, key, trials, [], 0.0)
    if spec.retrain if retrain is None else retrain:
        outcome.retrained = retrain_extremes(outcome, out / "retrained.json")
    outcome.seconds = time.perf_counter() - started
    return outcome


def default_journal(out: Path) -> str:
    """The storage of a search run by several workers: a journal file, which Optuna recommends for several
    processes on one machine (SQLite serialises writers and can fail under contention)."""
    return str((out / "search.journal").resolve())


def fail_orphans(study: optuna.Study) -> None:
    """Mark trials left ``running`` in a journal storage by a killed search as failed (a journal has no
    heartbeats; one search drives a journal file at a time, so no live trial is running yet)."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def config_id(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def extremes(outcome: SearchOutcome) -> list[tuple[str, TrialRecord]]:
    """(rank, trial) for the best and the worst completed trial of each depth (one entry when a depth has one trial);
    ties go to the lower trial number."""
    maximize = outcome.spec.direction == "maximize"
    by_depth: dict[int, list[TrialRecord]] = {}
    for t in outcome.completed:
        by_depth.setdefault(t.architecture.depth, []).append(t)
    picked = []
    for depth in sorted(by_depth):
        ranked = sorted(by_depth[depth], key=lambda t: (-t.value if maximize else t.value, t.number))
        picked.append(("best", ranked[0]))
        if len(ranked) > 1:
            worst = sorted(by_depth[depth], key=lambda t: (t.value if maximize else -t.value, t.number))[0]
            picked.append(("worst", worst))
    return picked


def retrain_extremes(outcome: SearchOutcome, cache: Path) -> list[Retrained]:
    """Retrain each depth's best and worst trial and evaluate the test split once; reuse cached results."""
    cached = {(r["trial"], r["config_id"]): r for r in json.loads(cache.read_text())} if cache.exists() else {}
    _, task, metric = outcome.objective.split(".")
    results = []
    for rank, t in extremes(outcome):
        cid = config_id(t.config)
        hit = _cached(cached.get((t.number, cid)), metric)
        if hit is not None:
            results.append(Retrained(**{**hit, "rank": rank}))
            continue
        run = train_run(RunConfig.model_validate(t.config))
        results.append(
            Retrained(
                trial=t.number,
                depth=t.architecture.depth,
                rank=rank,
                parameters=run.parameters,
                architecture=t.architecture.label,
                max_width=t.architecture.max_width,
                lr=float(t.lr),
                val=float(run.result.val[outcome.objective]),
                test=float(run.result.test[f"test.{task}.{metric}"]),
                test_loss=float(run.result.test[f"test.{task}.loss"]),
                seconds=run.result.seconds,
                config_id=cid,
            )
        )
        cache.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return results


def _cached(hit: dict[str, Any] | None, metric: str) -> dict[str, Any] | None:
    """A cached retrained result, or None to retrain: a cache written before typed tasks holds ``test_acc``, which
    is the ``test`` value only when the objective's metric is ``acc``."""
    if hit is None or "test" in hit:
        return hit
    if "test_acc" in hit and metric == "acc":
        return {**{k: v for k, v in hit.items() if k != "test_acc"}, "test": hit["test_acc"]}
    return None
