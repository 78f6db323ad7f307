"""The run configuration: one typed, validated object per training run.

Every field carries its own description (shown by ``mtlab train --help-config``); constraints live next to the field
so that a bad value fails with the key path that holds it (see :mod:`mtlab.config.load`). Cross-field rules that need
the dataset's task names (a loss weight or a reuse edge naming an unknown task) are checked in
:meth:`RunConfig._check_tasks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from mtlab.config.base import Strict
from mtlab.data.tasks import DEFAULT_FASHION_GROUPS, dataset_task_names
from mtlab.weighting import LossConfig, method_class

# ----------------------------------------------------------------------------------------------------------- data


class Augment(Strict):
    """Batched augmentation applied to training batches only (never to validation or test)."""

    crop_padding: int = Field(0, ge=0, description="Random crop after zero-padding each side by this many pixels.")
    horizontal_flip: bool = Field(False, description="Flip each training image left-right with probability 1/2.")


class DataBase(Strict):
    data_dir: Path | None = Field(None, description="Directory holding the dataset files (first place looked).")
    download: bool = Field(True, description="Download from the official source when the files are found nowhere.")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of the training split held out (stratified) for validation."
    )
    train_subset: int | None = Field(
        None, gt=0, description="Use only this many training examples (stratified, seeded) - for quick budgets."
    )
    test_subset: int | None = Field(None, gt=0, description="Evaluate on only this many test examples.")
    normalize: bool = Field(True, description="Standardise pixels per channel with training-split statistics.")
    augment: Augment = Field(default_factory=Augment)


class MnistData(DataBase):
    """MNIST (LeCun et al., 1998): 28x28 grey digits, task ``digit``."""

    dataset: Literal["mnist"]


class FashionData(DataBase):
    """Fashion-MNIST (Xiao et al., 2017): tasks ``item`` (10 classes) and ``group`` (one class per group).

    ``fashion-mnist-sample`` is the small real sample embedded in the package (no download needed).
    """

    dataset: Literal["fashion-mnist", "fashion-mnist-sample"]
    groups: dict[str, list[int]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_FASHION_GROUPS.items()},
        description="Group name -> item classes; every item 0-9 in exactly one group.",
    )

    @field_validator("groups")
    @classmethod
    def _groups_partition_items(cls, groups: dict[str, list[int]]) -> dict[str, list[int]]:
        items = sorted(i for members in groups.values() for i in members)
        if items != list(range(10)):
            raise ValueError(f"groups must place every item class 0-9 in exactly one group, got {items}")
        if len(groups) < 2:
            raise ValueError("groups needs at least two groups")
        return groups


class Cifar100Data(DataBase):
    """CIFAR-100 (Krizhevsky, 2009): 32x32 colour images, tasks ``fine`` (100) and ``coarse`` (20)."""

    dataset: Literal["cifar100"]


class MnistPairsData(DataBase):
    """Digit pairs: two MNIST digits avg-pooled to 14x14; tasks ``leq`` (a <= b), ``digit_a``, ``digit_b``.

    ``pairs`` pairs are drawn from the MNIST training set and, separately, ``pairs`` from the test set, both from
    the run's seed.
    """

    dataset: Literal["mnist-pairs"]
    pairs: int = Field(1000, gt=1, description="Number of training pairs, and of test pairs.")
    pixel_scale: Literal["unit", "raw"] = Field(
        "unit",
        description="'unit': pixels / 255 before pooling, in [0, 1]; 'raw': the pooled 0-255 values, as the "
        "course's generate_pair_sets gives them to the original study.",
    )


DataConfig = Annotated[MnistData | FashionData | Cifar100Data | MnistPairsData, Field(discriminator="dataset")]


# ---------------------------------------------------------------------------------------------------------- model


class ConvLayer(Strict):
    """One convolution, then ReLU, then optional max-pool, then optional batch-norm (the order of the reference)."""

    filters: int = Field(gt=0)
    kernel: int = Field(3, gt=0)
    stride: int = Field(1, gt=0)
    padding: Annotated[int, Field(ge=0)] | Literal["same", "valid"] = Field(
        "same", description="Pixels, or 'same' / 'valid'."
    )
    pool: int = Field(1, gt=0, description="Max-pool size (and stride) after the activation; 1 = none.")
    batch_norm: bool = False

    @model_validator(mode="after")
    def _same_needs_stride_one(self) -> ConvLayer:
        if self.padding == "same" and self.stride != 1:
            raise ValueError("padding 'same' needs stride 1; give the padding in pixels")
        return self


class DenseOptions(Strict):
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden dense layer.")
    batch_norm: bool = Field(False, description="Batch-norm after each hidden dense layer (after dropout).")


class MlpTrunk(DenseOptions):
    """Flatten, then dense layers of the given widths with ReLU."""

    type: Literal["mlp"]
    widths: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)


class CnnTrunk(DenseOptions):
    """Convolutions (see :class:`ConvLayer`), flatten, then optional dense layers."""

    type: Literal["cnn"]
    conv: list[ConvLayer] = Field(min_length=1)
    dense: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)


class ResNetTrunk(Strict):
    """A small ResNet of basic blocks (He et al., 2016): a 3x3 stem, then stages of basic blocks.

    Each stage after the first halves the resolution; the output is global-average-pooled to ``widths[-1]`` features.
    """

    type: Literal["resnet"]
    stem: int = Field(64, gt=0)
    widths: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [64, 128, 256], min_length=1)
    blocks: int = Field(1, gt=0, description="Basic blocks per stage.")


Trunk = Annotated[MlpTrunk | CnnTrunk | ResNetTrunk, Field(discriminator="type")]


class Head(DenseOptions):
    """Dense hidden layers of the given widths with ReLU, then a linear layer to the task's classes."""

    widths: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)


class Reuse(Strict):
    """Label reuse (a cascade): the source head's logits are concatenated into the target head's features.

    ``at`` counts hidden layers of the target head: the logits join the features after that many layers (``None``:
    after the middle one, ``len(widths) // 2``; the CIFAR-100 reference concatenates after 1024 -> 512, i.e. 2).
    Gradients flow from the target's loss into the source head unless ``stop_gradient``.
    """

    source: str
    target: str
    at: int | None = Field(None, ge=0)
    stop_gradient: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_arrow(cls, value: object) -> object:
        # "coarse->fine" is shorthand for {source: coarse, target: fine}.
        if isinstance(value, str):
            source, sep, target = value.partition("->")
            if not sep or not source.strip() or not target.strip():
                raise ValueError(f"reuse edge {value!r} must look like 'source->target'")
            return {"source": source.strip(), "target": target.strip()}
        return value

    @model_validator(mode="after")
    def _not_self(self) -> Reuse:
        if self.source == self.target:
            raise ValueError(f"a task cannot reuse its own labels ({self.source}->{self.target})")
        return self


class MultiTaskModel(Strict):
    """A trunk (shared by all tasks, or one copy per task) and one head per task, optionally cascaded."""

    kind: Literal["multitask"] = "multitask"
    trunk: Trunk
    head: Head = Field(default_factory=Head, description="Head used for every task without its own entry in heads.")
    heads: dict[str, Head] = Field(default_factory=dict, description="Per-task head overrides.")
    sharing: Literal["shared", "independent"] = "shared"
    reuse: list[Reuse] = Field(default_factory=list)

    @field_validator("reuse", mode="before")
    @classmethod
    def _single_edge(cls, value: object) -> object:
        # A grid axis may give one edge ("coarse->fine") or "none" instead of a list.
        if value is None or value == "none":
            return []
        if isinstance(value, (str, dict)):
            return [value]
        return value


class PairModel(Strict):
    """Siamese digit comparison (task ``leq``; with the auxiliary loss also ``digit_a`` and ``digit_b``).

    Each 14x14 image goes through a branch (trunk, then a linear layer to 10 digit logits); the comparison head
    reads both branches' logits (20 values). ``weight_sharing``: one branch used twice instead of two branches.
    """

    kind: Literal["pairs"]
    branch: Trunk
    head: Head = Field(default_factory=Head)
    weight_sharing: bool = False


ModelConfig = Annotated[MultiTaskModel | PairModel, Field(discriminator="kind")]


# --------------------------------------------------------------------------------------------- loss, optim, train


class OptimConfig(Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum (ignored by Adam/AdamW).")
    nesterov: bool = False
    schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    warmup_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="One-cycle: fraction of steps spent warming up.")
    grad_clip: float | None = Field(None, gt=0.0, description="Clip the global gradient norm to this value.")


class EarlyStopping(Strict):
    """Stop when the validation metric has not improved for ``patience`` epochs; restore the best weights."""

    metric: str = Field(
        "val.loss",
        description="'val.loss' (the mean of the task losses weighted by loss.weights) or 'val.<task>.loss' / "
        "'val.<task>.acc'.",
    )
    patience: int = Field(5, gt=0)
    min_delta: float = Field(0.0, ge=0.0)

    @field_validator("metric")
    @classmethod
    def _on_validation(cls, metric: str) -> str:
        parts = metric.split(".")
        ok = parts == ["val", "loss"] or (len(parts) == 3 and parts[0] == "val" and parts[2] in ("loss", "acc"))
        if not ok:
            raise ValueError(f"{metric!r} is not 'val.loss', 'val.<task>.loss' or 'val.<task>.acc'")
        return metric

    @property
    def mode(self) -> Literal["min", "max"]:
        return "max" if self.metric.endswith(".acc") else "min"


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
    channels_last: bool = Field(False, description="Channels-last memory layout for conv nets (solo runs).")
    compile: bool = Field(False, description="torch.compile the model (solo runs; falls back with a message).")


class RunConfig(Strict):
    """Everything that defines one training run; the run directory stores it resolved."""

    name: str = "run"
    seed: int = Field(0, ge=0)
    data: DataConfig
    tasks: list[str] | None = Field(None, description="Tasks to train (default: all of the dataset's tasks).")
    model: ModelConfig
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
        return list(self.tasks) if self.tasks is not None else dataset_task_names(self.data)

    @model_validator(mode="after")
    def _check_tasks(self) -> RunConfig:
        known = dataset_task_names(self.data)
        if self.tasks is not None:
            if not self.tasks:
                raise _at("tasks", "needs at least one task")
            for i, task in enumerate(self.tasks):
                if task not in known:
                    raise _at(f"tasks[{i}]", f"unknown task {task!r}; {self.data.dataset} has {known}")
            if len(set(self.tasks)) != len(self.tasks):
                raise _at("tasks", "lists a task twice")
        tasks = self.task_names
        for task in self.loss.weights:
            if task not in tasks:
                raise _at(f"loss.weights.{task}", f"unknown task; the trained tasks are {tasks}")
        if not any(self.loss.weights.get(t, 1.0) > 0 for t in tasks):
            raise _at("loss.weights", "every trained task has weight 0; nothing would be learned")
        method = method_class(self.loss.method)
        if len(tasks) < method.min_tasks:
            raise _at(
                "loss.method",
                f"{method.name} balances {method.min_tasks} or more tasks; this run trains {len(tasks)} ({tasks})",
            )
        if isinstance(self.model, PairModel):
            if self.data.dataset != "mnist-pairs":
                raise _at("model.kind", "'pairs' models need data.dataset 'mnist-pairs'")
            if "leq" not in tasks:
                raise _at("tasks", "a pair model is trained on leq; add the digit tasks for the auxiliary loss")
        else:
            if self.data.dataset == "mnist-pairs":
                raise _at("model.kind", "mnist-pairs data needs a 'pairs' model")
            self._check_reuse(tasks)
        stop = self.train.early_stopping
        if stop is not None:
            if self.data.val_fraction == 0:
                raise _at("train.early_stopping", "needs a validation split (data.val_fraction > 0)")
            task = stop.metric.split(".")[1]
            if stop.metric != "val.loss" and task not in tasks:
                raise _at("train.early_stopping.metric", f"unknown task {task!r}; the trained tasks are {tasks}")
        return self

    def _check_reuse(self, tasks: list[str]) -> None:
        model = self.model
        assert isinstance(model, MultiTaskModel)
        for task in model.heads:
            if task not in tasks:
                raise _at(f"model.heads.{task}", f"unknown task; the trained tasks are {tasks}")
        targets: dict[str, str] = {}
        for i, edge in enumerate(model.reuse):
            for role in ("source", "target"):
                if getattr(edge, role) not in tasks:
                    raise _at(f"model.reuse[{i}].{role}", f"unknown task {getattr(edge, role)!r}; tasks are {tasks}")
            if edge.target in targets:
                raise _at(f"model.reuse[{i}].target", f"{edge.target!r} already reuses {targets[edge.target]!r}")
            targets[edge.target] = edge.source
            depth = len(model.heads.get(edge.target, model.head).widths)
            if edge.at is not None and edge.at > depth:
                raise _at(f"model.reuse[{i}].at", f"{edge.at} > the {depth} hidden layers of head {edge.target!r}")
        # A cycle (a->b, b->a) has no order in which heads can be computed.
        for start in targets:
            seen, node = {start}, start
            while node in targets:
                node = targets[node]
                if node in seen:
                    raise _at("model.reuse", f"edges form a cycle through {node!r}")
                seen.add(node)


class KeyedError(ValueError):
    """A cross-field validation error that knows its own key path (see :func:`mtlab.config.load.format_error`)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _at(path: str, message: str) -> KeyedError:
    return KeyedError(path, message)
