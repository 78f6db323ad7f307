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
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtlab.config.schema import RunConfig
from mtlab.errors import ConfigError
from mtlab.search.space import Architecture, describe, trial_config
from mtlab.search.spec import SearchSpec
from mtlab.study.executors import executor_needs_shared_storage
from mtlab.study.executors.work import worker_name
from mtlab.train.fit import FitObserver, TrainingDiverged
from mtlab.train.run import train_run

if TYPE_CHECKING:
    import optuna

HEARTBEAT_SECONDS = 60


@dataclass
class TrialRecord:
    """One trial as stored: ``state`` complete / pruned / fail / running; ``value`` the validation objective of the
    selected epoch (pruned trials: the last value reported, Optuna's convention; failed ones: None); ``curve`` the
    objective reported after each epoch."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    parameters: int | None
    architecture: Architecture | None
    lr: float | None
    epochs: int
    seconds: float
    curve: dict[int, float]
    config: dict[str, Any] | None


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


class OptunaPruning(FitObserver):
    """Reports the validation objective to the trial after every epoch; raises ``TrialPruned`` when told to stop."""

    def __init__(self, trial: optuna.Trial, key: str):
        self.trial, self.key, self.seconds = trial, key, 0.0

    def on_epoch_end(self, record: dict[str, float]) -> None:
        import optuna

        epoch, value = int(record["epoch"]), float(record[self.key])
        self.seconds += float(record["seconds"])
        self.trial.report(value, epoch)
        self.trial.set_user_attr("epochs", epoch)
        self.trial.set_user_attr("seconds", self.seconds)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: {self.key} = {value:.4f}")


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
        from mtlab.search.workers import run_trial_workers

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


def trial_objective(spec: SearchSpec) -> Callable[[optuna.Trial], float]:
    """The function Optuna optimises: build the trial's config, train it with pruning, return the objective."""
    key = spec.objective_key()

    def objective(trial: optuna.Trial) -> float:
        config = trial_config(spec, trial)
        _record_config(trial, config)
        trial.set_user_attr("worker", worker_name())  # host:pid, to see which worker of a parallel search ran it
        outcome = train_run(config, observer=OptunaPruning(trial, key))
        trial.set_user_attr("seconds", outcome.result.seconds)
        return float(outcome.result.val[key])  # the selected epoch's validation value; the test split is not read

    return objective


def is_journal(url: str) -> bool:
    """A storage given as a file path (no ``scheme://``) is an Optuna journal file."""
    return "://" not in url


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


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from ``--storage``: a database URL (with heartbeats, so trials of a dead process are failed
    and replaced), or a file path for a journal file."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    if is_journal(url):
        from optuna.storages.journal import JournalFileBackend

        try:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(url))
        except OSError as e:
            raise ConfigError(f"--storage: cannot open the journal file {url}: {e.strerror or e}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=3 * HEARTBEAT_SECONDS
            )
        except (SQLAlchemyError, ValueError, ImportError) as e:  # bad URL, unreachable server, missing DB driver
            message = " ".join(str(e).split()).replace(url, "<url>")
            raise ConfigError(f"--storage: cannot open the storage: {type(e).__name__}: {message}") from None


def open_study(spec: SearchSpec, url: str) -> optuna.Study:
    """Create or load the study ``<name>-seed<seed>``; a stored study with a different spec is a user error."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    if spec.candidates is not None:
        sampler = optuna.samplers.GridSampler({"candidate": list(spec.candidates)}, seed=spec.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=spec.seed)
    name = f"{spec.name}-seed{spec.seed}"
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        sampler=sampler,
        pruner=_pruner(spec),
        direction=spec.direction,
        load_if_exists=True,
    )
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", spec.fingerprint())
        study.set_user_attr("spec", spec.model_dump(mode="json"))
    elif stored != spec.fingerprint():
        raise ConfigError(
            f"{_without_password(url)}: study {name!r} was run with a different spec or overrides; resume it with the "
            "same ones, or choose another --out / --storage"
        )
    return study


def _without_password(url: str) -> str:
    """The storage URL as shown in reports: a database password is masked."""
    from sqlalchemy.engine import make_url

    if is_journal(url):
        return url

    return make_url(url).render_as_string(hide_password=True)


def _pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    import optuna

    p = spec.pruner
    if p.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_epochs)
    if p.type == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_epochs, reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


def _record_config(trial: optuna.Trial, config: RunConfig) -> None:
    """Store what the result table needs before training, so pruned trials have it too."""
    from mtlab.data.catalog import load_dataset
    from mtlab.models import build_model

    dataset = load_dataset(config.data, seed=config.seed)  # parsed files are cached per process
    model = build_model(config, dataset.tasks, dataset.input_shape)
    trial.set_user_attr("config", config.model_dump(mode="json"))
    trial.set_user_attr("parameters", sum(p.numel() for p in model.parameters()))


def trial_record(frozen: optuna.trial.FrozenTrial) -> TrialRecord:
    attrs = frozen.user_attrs
    config = attrs.get("config")
    architecture = describe(RunConfig.model_validate(config)) if config else None
    return TrialRecord(
        number=frozen.number,
        state=frozen.state.name.lower(),
        value=frozen.value,
        params=dict(frozen.params),
        parameters=attrs.get("parameters"),
        architecture=architecture,
        lr=config["optim"]["lr"] if config else None,
        epochs=int(attrs.get("epochs", 0)),
        seconds=float(attrs.get("seconds", 0.0)),
        curve={int(k): float(v) for k, v in sorted(frozen.intermediate_values.items())},
        config=config,
    )


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
