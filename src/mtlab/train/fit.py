"""Train one multi-task model: the loop, validation-based early stopping, and the single final test evaluation.

The loop knows nothing about particular weighting methods or architectures: it asks the model for
``{task: logits}``, the loss for ``{task: cross-entropy}``, and the :class:`~mtlab.weighting.Weighting` for one
scalar. Model selection uses the validation split only; the test split is evaluated once, after training, on the
restored best state.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlab import seeding
from mtlab.config.schema import RunConfig
from mtlab.data.batches import Batches, Normalizer
from mtlab.data.split import RunSplits
from mtlab.models.base import MultiTaskNet
from mtlab.train.metrics import EpochTotals
from mtlab.train.optim import build_optimizer, build_schedule
from mtlab.weighting import Weighting, create_weighting


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
    num_classes: dict[str, int],
    device: torch.device,
    observer: FitObserver | None = None,
) -> FitResult:
    """Train ``model`` on ``splits.train`` as ``config`` says; return the history and the final test metrics.

    Same ``config.seed`` and device -> identical numbers (on the CPU). With ``train.early_stopping`` the weights of
    the best validation epoch are restored before the test evaluation; otherwise the last epoch's are used.
    """
    observer = observer or FitObserver()
    started = time.perf_counter()
    tasks = config.task_names
    classes = {t: num_classes[t] for t in tasks}
    torch.manual_seed(seeding.stream_seed(config.seed, "dropout"))  # dropout draws from the global generator
    model.to(device)

    train_split = splits.train.to(device)
    normalizer = Normalizer.fit(train_split.images, standardize=config.data.normalize)
    augment = config.data.augment
    train_batches = Batches(
        train_split,
        config.train.batch_size,
        normalizer,
        shuffle=True,
        generator=seeding.generator(config.seed, "batches"),
        crop_padding=augment.crop_padding,
        flip=augment.horizontal_flip,
        tasks=tasks,
    )
    val_batches = _eval_batches(splits.val, config, normalizer, tasks, device)

    weighting = create_weighting(config.loss.method, tasks, weights=config.loss.weights)
    params = list(model.parameters()) + list(weighting.parameters())
    optimizer = build_optimizer(config.optim, params)
    schedule = build_schedule(config.optim, optimizer, config.train.epochs * len(train_batches))

    stop = config.train.early_stopping
    stopper = EarlyStopper(stop.mode, stop.patience, stop.min_delta) if stop else None
    best_state = None
    history: list[dict[str, float]] = []
    stopped_early = False
    observer.on_fit_start(config.train.epochs, len(train_batches))

    for epoch in range(1, config.train.epochs + 1):
        epoch_start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        totals = EpochTotals(classes, device)
        for batch, (x, y) in enumerate(train_batches, 1):
            logits = model(x)
            losses = {t: F.cross_entropy(logits[t], y[t]) for t in tasks}
            loss, _ = weighting.combine(losses)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
            optimizer.step()
            weighting.after_step()
            schedule.step()
            totals.add(loss, losses, logits, y)
            observer.on_batch_end(epoch, batch)

        record: dict[str, float] = {"epoch": epoch, "lr": lr, **totals.summary("train")}
        _check_finite(record, epoch)
        if val_batches is not None:
            record.update(evaluate(model, val_batches, classes, weighting).summary("val"))
        record["seconds"] = time.perf_counter() - epoch_start
        history.append(record)
        observer.on_epoch_end(record)

        if stopper is not None:
            value = record[stop.metric]
            if stopper.improved(value):
                best_state = _copy_state(model)
            if stopper.update(epoch, value):
                stopped_early = epoch < config.train.epochs
                break

    best_epoch = len(history)
    if stopper is not None and best_state is not None:
        model.load_state_dict(best_state)
        best_epoch = stopper.best_epoch
    val_metrics = {k: v for k, v in history[best_epoch - 1].items() if k.startswith("val.")}

    # The one and only look at the test split.
    test_batches = _eval_batches(splits.test, config, normalizer, tasks, device)
    test_totals = evaluate(model, test_batches, classes, weighting, confusion=True)
    return FitResult(
        history=history,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        test=test_totals.summary("test"),
        confusion=test_totals.confusion_matrices(),
        normalizer=normalizer,
        val=val_metrics,
        seconds=time.perf_counter() - started,
    )


@torch.inference_mode()
def evaluate(
    model: MultiTaskNet,
    batches: Batches,
    num_classes: dict[str, int],
    weighting: Weighting,
    confusion: bool = False,
) -> EpochTotals:
    """One pass in eval mode (dropout off, batch-norm running statistics) with no gradient."""
    was_training = model.training
    model.eval()
    device = batches.split.images.device
    totals = EpochTotals(num_classes, device, confusion=confusion)
    for x, y in batches:
        logits = model(x)
        losses = {t: F.cross_entropy(logits[t], y[t]) for t in num_classes}
        total, _ = weighting.combine(losses)
        totals.add(total, losses, logits, y)
    model.train(was_training)
    return totals


def _eval_batches(split, config: RunConfig, normalizer: Normalizer, tasks: list[str], device) -> Batches | None:
    if split is None:
        return None
    return Batches(split.to(device), config.train.eval_batch_size, normalizer, tasks=tasks)


def _copy_state(model: torch.nn.Module) -> dict[str, Tensor]:
    return copy.deepcopy({k: v.detach() for k, v in model.state_dict().items()})


def _check_finite(record: dict[str, float], epoch: int) -> None:
    bad = [k for k, v in record.items() if k.endswith(".loss") and not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(f"training diverged at epoch {epoch}: {', '.join(bad)} not finite")
