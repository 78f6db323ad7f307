"""One complete run from a config: data, splits, model, ``fit``, and (optionally) a run directory on disk."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mtlab import environment, seeding
from mtlab.config.schema import RunConfig
from mtlab.data.catalog import load_dataset
from mtlab.data.split import RunSplits, carve_splits
from mtlab.models import MultiTaskNet, build_model
from mtlab.train.device import resolve_device
from mtlab.train.fit import FitObserver, FitResult, TrainingDiverged, fit_replicas
from mtlab.train.replicas import StackedReplicas, stacking_pays
from mtlab.train.rundir import RunDirectory


@dataclass
class RunOutcome:
    result: FitResult
    model: MultiTaskNet
    parameters: int
    run_dir: RunDirectory | None
    device: torch.device
    origin: str = ""  # where the data came from (a path or the embedded sample)
    extras: dict = field(default_factory=dict)  # split sizes, class names, input shape: what a run directory records


class FanOut(FitObserver):
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
    """Train one run: load the data, carve train/val/test, build the model from the seed, train, test once.

    Model selection uses the validation split only (early stopping restores the best epoch); the test split is
    evaluated once, on the selected weights.

    Args:
        config: The validated run config (``load_config``); its ``seed`` seeds everything.
        out: The run directory to write (``config.yaml``, ``meta.json``, ``history.csv``, ``metrics.json``,
            ``checkpoint.pt``); None writes nothing.
        argv: The command line recorded in ``meta.json``.
        observer: Called at the start, after each batch and after each epoch (progress displays).
        overwrite: Replace a non-empty ``out``.

    Returns:
        The outcome: ``result`` (the history, ``test`` metrics as ``{"test.<task>.<metric>": value}``, the best
        epoch), the trained ``model``, its parameter count, the run directory and the device.

    Raises:
        TrainingDiverged: The loss became NaN or infinite (the run directory says so).
        DataError: The dataset's files are missing or damaged.

    Example:
        ```python
        import mtlab

        config = mtlab.load_config("examples/fashion-mtl-sample.yaml", ["train.epochs=1"])
        outcome = mtlab.train_run(config, out=None)
        outcome.result.test["test.item.acc"]  # a fraction in [0, 1]
        ```
    """
    (outcome,) = train_runs([config], [out], argv=argv, observers=[observer], overwrite=overwrite)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def train_runs(
    configs: list[RunConfig],
    outs: list[Path | None],
    *,
    argv: list[str] | None = None,
    observers: list[FitObserver | None] | None = None,
    overwrite: bool = False,
    stacking: str = "auto",
) -> list[RunOutcome | TrainingDiverged]:
    """:func:`train_run` for K configs that differ only in seed, trained together (:func:`fit_replicas`).

    Each run gets its own data draw, split, initialisation and run directory, exactly as if trained alone; a run
    that diverges comes back as its exception, recorded as failed in its directory, and the others are unaffected.
    ``stacking="auto"`` stacks the replicas only where that is faster (:func:`~mtlab.train.replicas.stacking_pays`)
    and trains them one after another otherwise; ``"always"`` stacks them regardless.
    """
    if stacking not in ("auto", "always"):
        raise ValueError(f"stacking must be 'auto' or 'always', not {stacking!r}")
    config = configs[0]
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    device = resolve_device(config.train.device)
    observers = observers or [None] * len(configs)
    kwargs = {"argv": argv, "overwrite": overwrite, "stacking": stacking}

    def one_after_another() -> list[RunOutcome | TrainingDiverged]:
        return [
            train_runs([c], [o], observers=[b], **kwargs)[0] for c, o, b in zip(configs, outs, observers, strict=True)
        ]

    # A plateau schedule follows each seed's own validation score: seeds cannot share one optimiser.
    if len(configs) > 1 and (
        config.optim.follows_validation or (stacking == "auto" and not stacking_pays(config, device))
    ):
        return one_after_another()
    datasets, splits, models = [], [], []
    for c in configs:
        dataset = load_dataset(c.data, seed=c.seed)
        datasets.append(dataset)
        splits.append(
            carve_splits(
                dataset,
                val_fraction=c.data.val_fraction,
                seed=c.seed,
                train_subset=c.data.train_subset,
                test_subset=c.data.test_subset,
            )
        )
        torch.manual_seed(seeding.stream_seed(c.seed, "init"))
        models.append(build_model(c, dataset.tasks, dataset.input_shape))
    problem = models[0].stack_problem(StackedReplicas) if len(models) > 1 else None
    if problem is not None:  # a network vmap cannot run (the user's own): seeds train one after another
        warnings.warn(f"seeds train one after another: {problem}", RuntimeWarning, stacklevel=2)
        return one_after_another()
    if len(configs) > 1 and replica_bytes(splits, models) > memory_budget(device):
        # Too big to train together: halve the group (each half is still faster than runs one by one).
        half = len(configs) // 2
        return train_runs(configs[:half], outs[:half], observers=observers[:half], **kwargs) + train_runs(
            configs[half:], outs[half:], observers=observers[half:], **kwargs
        )
    run_dirs = [RunDirectory(out, overwrite=overwrite) if out is not None else None for out in outs]
    env = environment.describe(device)
    for c, run_dir, dataset in zip(configs, run_dirs, datasets, strict=True):
        if run_dir is not None:
            run_dir.start(c, argv=argv or [], environment=env, origin=dataset.origin)
    tasks = datasets[0].tasks
    try:
        results = fit_replicas(
            models,
            splits,
            configs,
            tasks=tasks,
            device=device,
            observers=[FanOut(o, d.observer() if d else None) for o, d in zip(observers, run_dirs, strict=True)],
        )
    except BaseException as e:
        for run_dir in run_dirs:
            if run_dir is not None:
                run_dir.fail(f"{type(e).__name__}: {e}")
        raise
    outcomes: list[RunOutcome | TrainingDiverged] = []
    rows = zip(configs, models, splits, run_dirs, results, datasets, strict=True)
    for c, model, split, run_dir, result, dataset in rows:
        parameters = sum(p.numel() for p in model.parameters())
        if isinstance(result, TrainingDiverged):
            if run_dir is not None:
                run_dir.fail(f"{type(result).__name__}: {result}")
            outcomes.append(result)
            continue
        extras = {
            "parameters": parameters,
            "parameter_counts": model.parameter_counts(),  # per part, shared, and per task
            "splits": {"train": len(split.train), "val": len(split.val or []), "test": len(split.test)},
            "tasks": {t: list(tasks[t].class_names) for t in c.task_names},
            # Type, primary metric and every metric's direction: what a report needs without the dataset.
            "task_types": {t: tasks[t].describe() for t in c.task_names},
            "input_shape": list(datasets[0].input_shape),
            **({"notes": list(dataset.notes)} if dataset.notes else {}),  # what the data decided (classes found)
        }
        if run_dir is not None:
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            run_dir.finish(result, state_dict=state, extras=extras)
        outcomes.append(RunOutcome(result, model, parameters, run_dir, device, dataset.origin, extras))
    return outcomes


def replica_bytes(splits: list[RunSplits], models: list[MultiTaskNet]) -> int:
    """Memory a group of replicas needs beyond activations: stacked split copies, and per parameter its value,
    gradient and two optimiser moments."""
    data = sum(
        part.images.numel() * part.images.element_size()
        for s in splits
        for part in (s.train, s.val, s.test)
        if part is not None
    )
    parameters = sum(p.numel() * p.element_size() for m in models for p in m.parameters())
    return data + 4 * parameters


def memory_budget(device: torch.device) -> int:
    """Half of the memory free on ``device`` (the rest is left for activations and everything else)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 2
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return 4 * 2**30  # not Linux: assume a modest machine
