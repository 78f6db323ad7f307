"""One trial of a search, as a worker runs it and as the store keeps it: the Optuna storage and study, the objective
(build the trial's config from the space, train it with pruning on validation), and the record read back.

Both the driver (:mod:`mtlab.search.run`) and the workers of a parallel search (:mod:`mtlab.search.workers`) use it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtlab.config.schema import RunConfig
from mtlab.errors import ConfigError
from mtlab.execute.work import worker_name
from mtlab.search.space import Architecture, describe, trial_config
from mtlab.search.spec import SearchSpec
from mtlab.train.fit import FitObserver
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
