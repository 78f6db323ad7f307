"""One complete run from a config: data, splits, model, ``fit``, and (optionally) a run directory on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mtlab import environment, seeding
from mtlab.config.schema import RunConfig
from mtlab.data.catalog import load_dataset
from mtlab.data.split import carve_splits
from mtlab.models import MultiTaskNet, build_model
from mtlab.rundir import RunDirectory
from mtlab.train.device import resolve_device
from mtlab.train.fit import FitObserver, FitResult, fit


@dataclass
class RunOutcome:
    result: FitResult
    model: MultiTaskNet
    parameters: int
    run_dir: RunDirectory | None
    device: torch.device


class _FanOut(FitObserver):
    """Forwards every hook to several observers (progress display, history file)."""

    def __init__(self, *observers: FitObserver | None):
        self.observers = [o for o in observers if o is not None]

    def on_fit_start(self, epochs: int, batches_per_epoch: int) -> None:
        for o in self.observers:
            o.on_fit_start(epochs, batches_per_epoch)

    def on_batch_end(self, epoch: int, batch: int) -> None:
        for o in self.observers:
            o.on_batch_end(epoch, batch)

    def on_epoch_end(self, record: dict[str, float]) -> None:
        for o in self.observers:
            o.on_epoch_end(record)


def train_run(
    config: RunConfig,
    out: Path | None = None,
    *,
    argv: list[str] | None = None,
    observer: FitObserver | None = None,
    overwrite: bool = False,
) -> RunOutcome:
    """Load the data, carve train/val/test, build the model from the seed, train, and record everything in ``out``."""
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    device = resolve_device(config.train.device)
    run_dir = RunDirectory(out, overwrite=overwrite) if out is not None else None
    dataset = load_dataset(config.data, seed=config.seed)
    splits = carve_splits(
        dataset,
        val_fraction=config.data.val_fraction,
        seed=config.seed,
        train_subset=config.data.train_subset,
        test_subset=config.data.test_subset,
    )
    torch.manual_seed(seeding.stream_seed(config.seed, "init"))
    model = build_model(config, dataset.tasks, dataset.input_shape)
    parameters = sum(p.numel() for p in model.parameters())
    if run_dir is not None:
        run_dir.start(config, argv=argv or [], environment=environment.describe(device), origin=dataset.origin)
    try:
        result = fit(
            model,
            splits,
            config,
            num_classes={t: task.num_classes for t, task in dataset.tasks.items()},
            device=device,
            observer=_FanOut(observer, run_dir.observer() if run_dir else None),
        )
    except BaseException as e:
        if run_dir is not None:
            run_dir.fail(f"{type(e).__name__}: {e}")
        raise
    if run_dir is not None:
        extras = {
            "parameters": parameters,
            "splits": {"train": len(splits.train), "val": len(splits.val or []), "test": len(splits.test)},
            "tasks": {t: list(dataset.tasks[t].class_names) for t in config.task_names},
            "input_shape": list(dataset.input_shape),
        }
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        run_dir.finish(result, state_dict=state, extras=extras)
    return RunOutcome(result=result, model=model, parameters=parameters, run_dir=run_dir, device=device)
