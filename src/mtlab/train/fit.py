"""Train multi-task models: the loop, validation-based early stopping, and the single final test evaluation.

:func:`fit` trains one model; :func:`fit_replicas` trains K seeds of one config in lockstep (see
:mod:`mtlab.train.replicas`) through the same loop, so the two cannot drift apart.

The loop knows nothing about particular weighting methods, architectures or task types: it asks the model for
``{task: outputs}``, each task's type for its loss and metrics (bound to the training split's statistics as an
:class:`~mtlab.tasks.Objective`) and hands the step to the strategy of the weighting method's kind
(:mod:`mtlab.train.step`), chosen once before the first epoch. Reported losses (``train.loss``, ``val.loss``) are
the task losses and their mean weighted by ``loss.weights`` - never a method's own terms. Model selection uses the
validation split only; the test split is evaluated once, after training, on the restored best state.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mtlab import seeding
from mtlab.config.schema import RunConfig
from mtlab.data.batches import Batches, Normalizer, ReplicaBatches
from mtlab.data.split import RunSplits
from mtlab.models.base import MultiTaskNet
from mtlab.tasks import Objective, Task
from mtlab.train.metrics import EpochTotals
from mtlab.train.optim import build_optimizer, build_plateau, build_schedule
from mtlab.train.precision import autocast_for
from mtlab.train.replicas import SingleReplica, StackedReplicas, channels_last_pays, parameter_views, replicate
from mtlab.train.step import TaskLosses, make_step
from mtlab.weighting import create_method


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and the tasks."""


class FitObserver:
    """Receives progress from :func:`fit`; every hook is a no-op unless overridden (progress bars, run files)."""

    def on_fit_start(self, epochs: int, batches_per_epoch: int) -> None:
        """Called once before the first epoch."""

    def on_batch_end(self, epoch: int, batch: int) -> None:
        """Called after each optimiser step (``epoch`` from 1, ``batch`` from 1)."""

    def on_epoch_end(self, record: dict[str, float]) -> None:
        """Called with the epoch's history record (train and validation metrics, lr, seconds)."""


@dataclass
class FitResult:
    """What :func:`fit` returns; ``history`` has one flat record per epoch (keys like ``val.item.acc``)."""

    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    test: dict[str, float]
    confusion: dict[str, list[list[int]]]
    normalizer: Normalizer
    val: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    weighting_state: dict[str, Tensor] = field(default_factory=dict)
    """The weighting method's parameters and state (this replica's row), at the selected epoch."""


class EarlyStopper:
    """Tracks the best value of a validation metric; ``update`` returns True when training should stop."""

    def __init__(self, mode: str, patience: int | None, min_delta: float = 0.0):
        self.sign = 1.0 if mode == "min" else -1.0  # compare as "lower is better"
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        return self.sign * value < self.best - self.min_delta

    def update(self, epoch: int, value: float) -> bool:
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = self.sign * value, epoch, 0
        else:
            self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience


def fit(
    model: MultiTaskNet,
    splits: RunSplits,
    config: RunConfig,
    *,
    tasks: Mapping[str, Task | int],
    device: torch.device,
    observer: FitObserver | None = None,
) -> FitResult:
    """Train ``model`` on ``splits.train`` as ``config`` says; return the history and the final test metrics.

    Same ``config.seed`` and device -> identical numbers (on the CPU). With ``train.early_stopping`` the weights of
    the best validation epoch are restored before the test evaluation; otherwise the last epoch's are used. With
    ``train.test_last_epochs`` N the test split is also evaluated after each of the N - 1 epochs before the last, and
    the reported test metrics are the mean of those N evaluations (confusion matrices: the last epoch's).
    Raises :class:`TrainingDiverged` if a training loss becomes NaN or infinite. ``tasks`` maps each task to its
    :class:`~mtlab.tasks.Task` (a plain int means a ``multiclass`` task with that many classes).
    """
    (result,) = fit_replicas([model], [splits], [config], tasks=tasks, device=device, observers=[observer])
    if isinstance(result, TrainingDiverged):
        raise result
    return result


@dataclass
class _Replica:
    """Book-keeping of one replica during :func:`fit_replicas`."""

    config: RunConfig
    observer: FitObserver
    stopper: EarlyStopper | None
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, Tensor] | None = None
    best_method_state: dict[str, Tensor] | None = None
    active: bool = True
    stopped_early: bool = False
    failure: TrainingDiverged | None = None


def fit_replicas(
    models: list[MultiTaskNet],
    splits: list[RunSplits],
    configs: list[RunConfig],
    *,
    tasks: Mapping[str, Task | int],
    device: torch.device,
    observers: list[FitObserver | None] | None = None,
) -> list[FitResult | TrainingDiverged]:
    """Train K models that differ only in seed (own initialisation, data, order) in lockstep; one result each.

    Replica k's history equals a solo :func:`fit` of ``models[k]`` with ``configs[k]`` within float tolerance
    (dropout masks aside, which are drawn independently per replica). Early stopping stops a replica, not the group:
    its history ends at its stopping epoch and its best state is restored for the test evaluation. A replica whose
    loss diverges is returned as a :class:`TrainingDiverged` while the others go on. ``seconds`` in the history and
    results are the group's wall time divided by K.
    """
    k_count = len(models)
    _check_same_protocol(configs)
    config = configs[0]
    observers = [o or FitObserver() for o in (observers or [None] * k_count)]
    started = time.perf_counter()
    task_of = {t: as_task(t, tasks[t]) for t in config.task_names}
    tasks = config.task_names
    torch.manual_seed(seeding.stream_seed(config.seed, "dropout"))  # dropout draws from the global generator
    for model in models:
        model.to(device)
    layout = channels_last_pays(config, device, len(models))
    replicas = replicate(models, channels_last=layout, compile=config.train.compile)
    autocast, scaler = autocast_for(config.train.precision, device)

    train_splits = [s.train.to(device) for s in splits]
    normalizers = [Normalizer.fit(s.images, standardize=config.data.normalize) for s in train_splits]
    augment = config.data.augment

    # One generator per replica from its own seed, so a stacked replica draws what its solo run draws.
    method = create_method(
        config.loss, tasks, k_count, generators=[seeding.generator(c.seed, "weighting") for c in configs]
    ).to(device)
    # A method that splits each batch into samples (double sampling) gets at least two examples a sample from the
    # last, partial batch of an epoch: a smaller one is merged into the batch before it (batch norm cannot
    # normalise one image's 1 x 1 map, as DeepLab's image pooling does). Full batches are split as they are.
    smallest_last = 2 * method.samples if method.samples > 1 else 1

    def training_batches(stream: str, shuffle: bool) -> ReplicaBatches:
        return ReplicaBatches(
            train_splits,
            config.train.batch_size,
            normalizers,
            shuffle=shuffle,
            generators=[seeding.generator(c.seed, stream) for c in configs],
            crop_padding=augment.crop_padding,
            flip=augment.horizontal_flip,
            tasks=tasks,
            smallest_last=smallest_last,
        )

    train_batches = training_batches("batches", config.train.shuffle)
    val_batches = _eval_batches([s.val for s in splits], config, normalizers, tasks, device)
    test_batches = _eval_batches([s.test for s in splits], config, normalizers, tasks, device)
    # train.test_last_epochs = N: the test records of epochs E-N+1 .. E-1 (per replica), averaged with the final one.
    averaged = config.train.test_last_epochs
    earlier_tests: list[list[dict[str, float]]] = []
    # Each task's loss and metrics, with what its type fits on each replica's training split (regression scales).
    objectives = {
        t: task.task_type.bind(task, [s.labels[t] for s in train_splits], device) for t, task in task_of.items()
    }

    views = parameter_views(models[0], replicas)
    optimizer = build_optimizer(config.optim, replicas.parameters(), extra=method.parameters())
    schedule = build_schedule(
        config.optim, optimizer, config.train.epochs * len(train_batches), steps_per_epoch=len(train_batches)
    )
    plateau = build_plateau(config.optim, optimizer, config.metric_direction(config.optim.plateau_metric))
    if plateau is not None and (k_count > 1 or val_batches is None):
        raise ValueError(
            "optim.schedule plateau follows one run's validation metric: it needs a validation split and one replica"
        )
    task_losses = TaskLosses(config, objectives, device)
    # A bilevel method's meta batches: the training split again, in an order of its own (Auto-Lambda's authors
    # use a second loader over the training set); never the validation split early stopping reads, nor the test.
    meta_batches = _endless(training_batches("meta batches", True)) if method.needs_meta_batch else None
    step = make_step(
        replicas,
        models[0],
        method,
        optimizer,
        task_losses,
        views,
        diagnostics=config.train.diagnostics,
        grad_clip=config.optim.grad_clip,
        autocast=autocast,
        scaler=scaler,
        meta_batches=meta_batches,
        steps_per_epoch=len(train_batches),
        epochs=config.train.epochs,
    )
    stop = config.train.early_stopping
    mode = config.metric_direction(stop.metric) if stop else "min"  # the metric's direction, from its task type
    states = [
        _Replica(c, o, EarlyStopper(mode, stop.patience, stop.min_delta) if stop else None)
        for c, o in zip(configs, observers, strict=True)
    ]
    for state in states:
        state.observer.on_fit_start(config.train.epochs, len(train_batches))

    for epoch in range(1, config.train.epochs + 1):
        if not any(s.active for s in states):
            break
        epoch_start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        replicas.start_epoch(epoch, config.train.epochs)  # a network's own schedule (LTB's temperature)
        replicas.train(True)
        totals = EpochTotals(objectives, k_count, device)
        for batch, (x, y) in enumerate(train_batches, 1):
            out = step(x, y)  # losses (K, T), outputs {task: (K, B, O)}, weights (K, T)
            if schedule is not None:
                schedule.step()
            losses = {t: out.losses[:, i] for i, t in enumerate(tasks)}
            totals.add(task_losses.total(out.losses), losses, out.logits, y, out.weights)
            for state in states:
                state.observer.on_batch_end(epoch, batch)
        step.weighting.end_epoch(totals.mean_losses())
        # Wall time of the optimiser steps alone (no validation), per step and replica: a method's cost.
        step_seconds = (time.perf_counter() - epoch_start) / (len(train_batches) * k_count)
        conflict = step.diagnostics.summary() if step.diagnostics is not None else [{}] * k_count

        train_records = totals.summary("train")
        val_records = (
            evaluate(replicas, val_batches, objectives, config.loss.weights, autocast=autocast).summary("val")
            if val_batches
            else None
        )
        if averaged and config.train.epochs - averaged < epoch < config.train.epochs:
            earlier_tests.append(
                evaluate(replicas, test_batches, objectives, config.loss.weights, autocast=autocast).summary("test")
            )
        # train.test_history: the test split after every epoch, recorded beside the validation metrics (a paper's
        # selection by test metrics, shown by the report; the run's own test metrics are still those below).
        history_tests = (
            evaluate(replicas, test_batches, objectives, config.loss.weights, autocast=autocast).summary("test")
            if config.train.test_history
            else None
        )
        if plateau is not None:  # one replica (checked above): its own validation metric sets its learning rate
            plateau.step(val_records[0][config.optim.plateau_metric])
        seconds = (time.perf_counter() - epoch_start) / k_count
        for k, state in enumerate(states):
            if state.active:
                record = {"epoch": epoch, "lr": lr, **train_records[k]}
                record.update(val_records[k] if val_records else {})
                record.update(history_tests[k] if history_tests else {})
                record.update(conflict[k])
                record["step_seconds"] = step_seconds
                record["seconds"] = seconds
                _record_epoch(state, k, record, replicas, method)

    results: list[FitResult | TrainingDiverged] = []
    for k, state in enumerate(states):
        if state.best_state is not None:
            replicas.load_state(k, state.best_state)
            method.load_replica_state(k, state.best_method_state)
    if isinstance(replicas, StackedReplicas):  # hand the trained weights back to the caller's modules
        for k, model in enumerate(models):
            model.load_state_dict(replicas.state(k))
    # The one and only look at the test split, for every replica at once, on its selected weights (with
    # train.test_last_epochs, the last of the looks whose mean is reported).
    test = evaluate(replicas, test_batches, objectives, config.loss.weights, confusion=True, autocast=autocast)
    test_records = test.summary("test")
    if earlier_tests:
        test_records = [_mean_records([*(e[k] for e in earlier_tests), r]) for k, r in enumerate(test_records)]
    seconds = (time.perf_counter() - started) / k_count
    for k, state in enumerate(states):
        if state.failure is not None:
            results.append(state.failure)
            continue
        best_epoch = state.stopper.best_epoch if state.best_state is not None else len(state.history)
        results.append(
            FitResult(
                history=state.history,
                best_epoch=best_epoch,
                stopped_early=state.stopped_early,
                test=test_records[k],
                confusion=test.confusion_matrices(k),
                normalizer=normalizers[k],
                val={m: v for m, v in state.history[best_epoch - 1].items() if m.startswith("val.")},
                seconds=seconds,
                weighting_state={name: v.cpu() for name, v in method.replica_state(k).items()},
            )
        )
    return results


def _mean_records(records: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over ``records`` (the test evaluations of the last epochs)."""
    return {key: sum(r[key] for r in records) / len(records) for key in records[-1]}


def _record_epoch(state: _Replica, k: int, record: dict[str, float], replicas, method) -> None:
    """Append one epoch to a replica's history; stop it on divergence or when early stopping says so."""
    bad = [m for m, v in record.items() if m.endswith(".loss") and m.startswith("train") and not math.isfinite(v)]
    if bad:
        state.failure = TrainingDiverged(f"training diverged at epoch {record['epoch']}: {', '.join(bad)} not finite")
        state.active = False
        return
    state.history.append(record)
    state.observer.on_epoch_end(record)
    if state.stopper is None:
        return
    value = record[state.config.train.early_stopping.metric]
    if state.stopper.improved(value):
        state.best_state = copy.deepcopy(replicas.state(k))
        state.best_method_state = method.replica_state(k)
    if state.stopper.update(int(record["epoch"]), value):
        state.active = False
        state.stopped_early = record["epoch"] < state.config.train.epochs


@torch.inference_mode()
def evaluate(
    model: MultiTaskNet | SingleReplica | StackedReplicas,
    batches: Batches | ReplicaBatches,
    objectives: Mapping[str, Objective],
    loss_weights: dict[str, float] | None = None,
    confusion: bool = False,
    autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> EpochTotals:
    """One pass in eval mode (dropout off, batch-norm running statistics) with no gradient.

    The total loss is the mean of the task losses weighted by ``loss_weights`` (``loss.weights``; 1 per task
    unless given), tasks of weight 0 left out."""
    weights = {t: (loss_weights or {}).get(t, 1.0) for t in objectives}
    norm = sum(weights.values())
    replicas = SingleReplica(model) if isinstance(model, torch.nn.Module) else model
    if isinstance(batches, Batches):
        batches = batches.replica
    replicas.train(False)
    totals = EpochTotals(objectives, replicas.count, batches.images.device, confusion=confusion)
    for x, y in batches:
        with autocast():
            logits = replicas(x)
            losses = {t: objectives[t].loss(logits[t], y[t]) for t in objectives}
            total = sum(losses[t] * (w / norm) for t, w in weights.items() if w > 0)
        totals.add(total, losses, logits, y)
    replicas.train(True)
    return totals


def as_task(name: str, task: Task | int) -> Task:
    """``task``, or a ``multiclass`` task of that many classes for a plain int (a library caller's shorthand)."""
    if isinstance(task, Task):
        return task
    return Task(name, tuple(str(c) for c in range(task)))


def _endless(batches: ReplicaBatches) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
    """Pass after pass over ``batches`` (a new order each pass), as long as the loop asks."""
    while True:
        yield from batches


def _eval_batches(splits, config: RunConfig, normalizers, tasks: list[str], device) -> ReplicaBatches | None:
    if splits[0] is None:
        return None
    return ReplicaBatches([s.to(device) for s in splits], config.train.eval_batch_size, normalizers, tasks=tasks)


def _check_same_protocol(configs: list[RunConfig]) -> None:
    """Replicas may differ in their seed only: everything else is shared (one optimiser, one schedule, one loop)."""
    first = configs[0].model_dump(exclude={"seed"})
    for c in configs[1:]:
        if c.model_dump(exclude={"seed"}) != first:
            raise ValueError("replicas trained together must have the same config except for the seed")
