"""The run configuration: one typed, validated object per training run.

Every field carries its own description (shown by ``mtlab train --help-config``); constraints live next to the field
so that a bad value fails with the key path that holds it (see :mod:`mtlab.config.load`). Cross-field rules that need
the dataset's task names (a loss weight naming an unknown task) are checked in :meth:`RunConfig._check_tasks`; the
rules of a model kind (its dataset, its reuse edges) in the kind's own :meth:`ModelKind.check_run`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mtlab.config.base import (  # noqa: F401  (re-exported: the names the rest of mtlab imports from here)
    DATASETS,
    MODEL_KINDS,
    TRUNKS,
    Augment,
    DataBase,
    KeyedError,
    ModelKind,
    Strict,
    TrunkOptions,
    register_dataset,
    register_model_kind,
    register_trunk,
    shared_unions,
    unknown_task,
    unknown_task_key,
)
from mtlab.config.base import at as _at
from mtlab.weighting import LossConfig, method_class

if TYPE_CHECKING:  # assembled from the registries (mtlab.config.base.assemble); for type checkers, their bases
    DataConfig = DataBase
    ModelConfig = ModelKind
    Trunk = TrunkOptions

_ASSEMBLED = ("DataConfig", "ModelConfig", "Trunk")


def __getattr__(name: str) -> Any:
    # ``from mtlab.config.schema import DataConfig`` (or ModelConfig, Trunk): the assembled union.
    if name in _ASSEMBLED:
        return shared_unions()[name]
    if name == "TrunkConfig":
        return TrunkOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _either(names: list[str]) -> str:
    return " or ".join(repr(n) for n in names) or "(none registered)"


# ---------------------------------------------------------------------------------------------------------- model


def model_kind(kind: str) -> type[ModelKind]:
    """The config class of model kind ``kind`` (``multitask`` ...); an unknown kind is a :class:`KeyError`."""
    return MODEL_KINDS.get(kind)


# --------------------------------------------------------------------------------------------- loss, optim, train


def validation_metric(metric: str, reader: str) -> str:
    """``metric`` if it is ``val.loss`` or ``val.<task>.<metric>``, else ValueError: ``reader`` (early stopping, a
    schedule) reads the validation split, never the test split."""
    parts = metric.split(".")
    if not (parts == ["val", "loss"] or (len(parts) == 3 and parts[0] == "val" and all(parts))):
        raise ValueError(f"{metric!r} is not 'val.loss' or 'val.<task>.<metric>' ({reader} never reads test)")
    return metric


class OptimConfig(Strict):
    added_options: ClassVar[tuple[str, ...]] = (
        "step_offset",
        "method_lr",
        "plateau_metric",
        "plateau_factor",
        "plateau_patience",
        "min_lr",
    )
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum (ignored by Adam/AdamW).")
    nesterov: bool = False
    schedule: Literal["constant", "cosine", "onecycle", "step", "plateau"] = "constant"
    step_epochs: int = Field(
        100, gt=0, description="Step schedule: multiply the learning rate by step_gamma every this many epochs."
    )
    step_gamma: float = Field(0.5, gt=0.0, le=1.0, description="Step schedule: the factor (PyTorch's StepLR gamma).")
    step_offset: int = Field(
        0,
        ge=0,
        description="Step schedule: the drops come this many epochs earlier - before 0-based epochs "
        "step_epochs - offset, 2 step_epochs - offset, ... (Sener & Koltun's loop: 1); 0: PyTorch's StepLR.",
    )
    warmup_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="One-cycle: fraction of steps spent warming up.")
    plateau_metric: str = Field(
        "val.loss",
        description="Plateau schedule: the validation metric watched after each epoch ('val.loss' or "
        "'val.<task>.<metric>'; its direction from the task type).",
    )
    plateau_factor: float = Field(
        0.1,
        gt=0.0,
        lt=1.0,
        description="Plateau schedule: multiply the learning rate by this when the metric has "
        "not improved for plateau_patience epochs (PyTorch's ReduceLROnPlateau factor).",
    )
    plateau_patience: int = Field(10, ge=0, description="Plateau schedule: epochs without improvement before a cut.")
    min_lr: float = Field(0.0, ge=0.0, description="Plateau schedule: the learning rate is never cut below this.")
    grad_clip: float | None = Field(None, gt=0.0, description="Clip the global gradient norm to this value.")
    method_lr: float | None = Field(
        None,
        gt=0.0,
        description="Learning rate of the weighting method's own trained parameters (uncertainty's "
        "log-variances, GradNorm's weights), in the same optimiser; default: lr (Nash-MTL's trainers: 0.025).",
    )

    @field_validator("plateau_metric")
    @classmethod
    def _plateau_on_validation(cls, metric: str) -> str:
        return validation_metric(metric, "a schedule")

    @property
    def follows_validation(self) -> bool:
        """Whether the learning rate follows each run's own validation metric (plateau): then seeds cannot share
        one optimiser, and train one after another."""
        return self.schedule == "plateau"

    @model_validator(mode="after")
    def _offset_within_a_period(self) -> OptimConfig:
        if self.step_offset >= self.step_epochs:
            raise ValueError(f"step_offset {self.step_offset} must be less than step_epochs {self.step_epochs}")
        return self


class EarlyStopping(Strict):
    """Stop when the validation metric has not improved for ``patience`` epochs; restore the best weights.

    The metric is minimised or maximised by its direction, which the task's type declares (``val.age.mae`` is
    minimised, ``val.gender.auroc`` maximised; every loss is minimised)."""

    metric: str = Field(
        "val.loss",
        description="'val.loss' (the mean of the task losses weighted by loss.weights) or 'val.<task>.<metric>' "
        "with any metric of the task's type (loss, acc, f1, auroc, mae, rmse, r2, ...).",
    )
    patience: int = Field(5, gt=0)
    min_delta: float = Field(0.0, ge=0.0)

    @field_validator("metric")
    @classmethod
    def _on_validation(cls, metric: str) -> str:
        return validation_metric(metric, "early stopping")

    @property
    def task(self) -> str | None:
        """The task the metric belongs to (None for ``val.loss``)."""
        parts = self.metric.split(".")
        return parts[1] if len(parts) == 3 else None


class Diagnostics(Strict):
    """Task-gradient conflict on the shared parameters (see :mod:`mtlab.train.diagnostics`)."""

    every: int = Field(
        10, gt=0, description="Measure every N optimiser steps, counted over the run (steps 1, N+1, 2N+1, ...)."
    )
    layers: bool = Field(False, description="Also per shared layer (one module's parameters).")


class TrainConfig(Strict):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(100, gt=0)
    shuffle: bool = Field(
        True,
        description="Draw a new order of the training examples every epoch; false: the stored order, in "
        "consecutive batches, every epoch (the original mnist-pairs protocol).",
    )
    eval_batch_size: int = Field(1000, gt=0)
    early_stopping: EarlyStopping | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    threads: int | None = Field(None, gt=0, description="torch CPU threads (default: torch's choice).")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Autocast precision: bf16 on CPU and CUDA, fp16 (with loss scaling) on CUDA only."
    )
    channels_last: bool | Literal["auto"] = Field(
        "auto",
        description="Channels-last memory layout for conv nets (solo runs); auto: on a CPU, where it is faster.",
    )
    compile: bool = Field(False, description="torch.compile the model (solo runs; falls back with a message).")
    diagnostics: Diagnostics | None = Field(
        None, description="Per task pair, cosine and magnitude ratio of the task gradients every N steps (off: null)."
    )
    test_last_epochs: int | None = Field(
        None,
        gt=0,
        description="Evaluate the test split after each of the last N epochs and report the mean of those N "
        "evaluations as the test metrics (the protocol of Liu et al. 2019 and Nash-MTL: no model selection, mean "
        "of the last 10 epochs); off (null): the test split is evaluated once, on the selected weights.",
    )
    added_options: ClassVar[tuple[str, ...]] = ("test_history",)
    test_history: bool = Field(
        False,
        description="Also evaluate the test split after every epoch and record it in the history (test.<task>."
        "<metric>), for a report that shows a paper's selection of the epoch by test metrics beside mtlab's; the "
        "run's test metrics stay those of its selected weights. Costs one test pass per epoch.",
    )

    @model_validator(mode="after")
    def _test_average_needs_no_selection(self) -> TrainConfig:
        n = self.test_last_epochs
        if n is not None and n > self.epochs:
            raise ValueError(f"test_last_epochs {n} > epochs {self.epochs}")
        if n is not None and self.early_stopping is not None:
            raise ValueError("test_last_epochs averages the last epochs' test metrics; it excludes early_stopping")
        return self


class RunConfig(Strict):
    """Everything that defines one training run; the run directory stores it resolved."""

    name: str = "run"
    seed: int = Field(0, ge=0)
    data: DataConfig  # the union of every registered dataset's options, by forward reference (see the docstring)
    tasks: list[str] | None = Field(None, description="Tasks to train (default: all of the dataset's tasks).")
    model: ModelConfig = Field(  # likewise, of every model kind's options
        examples=[{"trunk": {"type": "mlp", "widths": [64]}}]
    )
    loss: LossConfig = Field(
        default_factory=lambda: method_class("fixed").Options(),
        description="The weighting method and its options (``mtlab weightings`` lists them); default fixed.",
    )
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_model_kind(cls, value: object) -> object:
        # ``kind`` selects the model union; a config without it means the common case, a multi-task model.
        if isinstance(value, dict) and isinstance(value.get("model"), dict) and "kind" not in value["model"]:
            value = {**value, "model": {"kind": "multitask", **value["model"]}}
        # Likewise ``method`` selects the loss union; without it the loss section configures fixed weights.
        if isinstance(value, dict) and isinstance(value.get("loss"), dict) and "method" not in value["loss"]:
            value = {**value, "loss": {"method": "fixed", **value["loss"]}}
        return value

    @property
    def task_names(self) -> list[str]:
        """The trained tasks, in the dataset's order unless ``tasks`` gives one."""
        return list(self.tasks) if self.tasks is not None else self.data.task_names()

    def _check_dense_augment(self, tasks: list[str]) -> None:
        """Crops and flips move only the images: a per-pixel target would no longer match its image."""
        augment = self.data.augment
        if not (augment.crop_padding or augment.horizontal_flip):
            return
        from mtlab.tasks import TASK_TYPES  # only now: checking a config imports no torch

        types = self.data.task_types()
        dense = [t for t in tasks if TASK_TYPES.get(types[t]).dense]
        if dense:
            raise _at(
                "data.augment",
                f"crops and flips move only the images, not the per-pixel targets of {dense}; turn them off",
            )

    def _check_pairs(self) -> None:
        """Examples that are image pairs need a kind that compares pairs, and only they suit one."""
        if self.data.gives_pairs and not self.model.reads_pairs:
            kinds = [name for name, cls in MODEL_KINDS.items() if cls.reads_pairs]
            raise _at(
                "model.kind",
                f"{self.data.dataset} data needs a {_either(kinds)} model, not {self.model.sharing_label()!r}",
            )
        if self.model.reads_pairs and not self.data.gives_pairs:
            datasets = list(dict.fromkeys(name for name, cls in DATASETS.items() if cls.gives_pairs))
            raise _at("model.kind", f"{self.model.kind!r} models need data.dataset {_either(datasets)}")

    @model_validator(mode="after")
    def _check_tasks(self) -> RunConfig:
        known = self.data.task_names()
        if self.tasks is not None:
            if not self.tasks:
                raise _at("tasks", "needs at least one task")
            for i, task in enumerate(self.tasks):
                if task not in known:
                    raise _at(f"tasks[{i}]", unknown_task(task, known, f"{self.data.dataset} has {known}"))
            if len(set(self.tasks)) != len(self.tasks):
                raise _at("tasks", "lists a task twice")
        tasks = self.task_names
        for task in self.loss.weights:
            if task not in tasks:
                raise _at(f"loss.weights.{task}", unknown_task_key(f"loss.weights.{task}", tasks))
        if not any(self.loss.weights.get(t, 1.0) > 0 for t in tasks):
            raise _at("loss.weights", "every trained task has weight 0; nothing would be learned")
        method = method_class(self.loss.method)
        if len(tasks) < method.min_tasks:
            raise _at(
                "loss.method",
                f"{method.name} balances {method.min_tasks} or more tasks; this run trains {len(tasks)} ({tasks})",
            )
        problem = self.loss.run_problem(self.train.epochs)
        if problem is not None:
            raise _at(f"loss.{problem[0]}", problem[1])
        self.data.check_run(self)
        self._check_pairs()
        self._check_dense_augment(tasks)
        self.model.check_run(self)
        stop = self.train.early_stopping
        if stop is not None:
            self._check_validation_metric("train.early_stopping", "train.early_stopping.metric", stop.metric, tasks)
        if self.optim.follows_validation:
            self._check_validation_metric("optim.schedule", "optim.plateau_metric", self.optim.plateau_metric, tasks)
        return self

    def _check_validation_metric(self, user: str, key: str, metric: str, tasks: list[str]) -> None:
        """A metric that ``user`` reads on the validation split after each epoch (``key`` names it): there is a
        validation split, and the metric's task is trained and reports it (an unknown metric of the task's type fails
        in :meth:`metric_direction`, naming the ones it has)."""
        if self.data.val_fraction == 0:
            raise _at(user, "needs a validation split (data.val_fraction > 0)")
        parts = metric.split(".")
        if len(parts) == 3:
            if parts[1] not in tasks:
                raise _at(key, unknown_task(parts[1], tasks, f"the trained tasks are {tasks}"))
            self.metric_direction(metric, key)

    def task_type_names(self) -> dict[str, str]:
        """Trained task -> its task type's name."""
        types = self.data.task_types()
        return {t: types[t] for t in self.task_names}

    def metric_direction(self, key: str, where: str = "train.early_stopping.metric") -> str:
        """``"min"`` or ``"max"`` for a history key such as ``val.loss``, ``val.age.mae``, ``test.gender.auroc``;
        a metric the task's type does not report is a :class:`KeyedError` at ``where``."""
        from mtlab.tasks import TASK_TYPES

        parts = key.split(".")
        if len(parts) == 2 and parts[1] == "loss":
            return "min"
        task_type = TASK_TYPES.get(self.data.task_types()[parts[1]])
        if parts[2] not in task_type.metric_names():
            raise _at(
                where,
                f"{parts[1]} is a {task_type.name} task, which reports {task_type.metric_names()}, not {parts[2]!r}",
            )
        return task_type.direction(parts[2])
