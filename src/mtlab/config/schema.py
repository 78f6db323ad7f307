"""The run configuration: one typed, validated object per training run.

Every field carries its own description (shown by ``mtlab train --help-config``); constraints live next to the field
so that a bad value fails with the key path that holds it (see :mod:`mtlab.config.load`). Cross-field rules that need
the dataset's task names (a loss weight naming an unknown task) are checked in :meth:`RunConfig._check_tasks`; the
rules of a model kind (its dataset, its reuse edges) in the kind's own :meth:`ModelKind.check_run`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, field_validator, model_validator

from mtlab.config.base import (  # noqa: F401  (re-exported: the names the rest of mtlab imports from here)
    DATASETS,
    MODEL_KINDS,
    TRUNK_TYPES,
    Augment,
    DataBase,
    KeyedError,
    ModelKind,
    Strict,
    dense_tasks,
    register_dataset,
    register_model_kind,
    register_trunk_type,
    unknown_task,
    unknown_task_key,
)
from mtlab.config.base import at as _at
from mtlab.weighting import LossConfig, method_class

# ---------------------------------------------------------------------------------------------------------- model


class ConvLayer(Strict):
    """One convolution, then ReLU, then optional max-pool, then optional batch-norm (the order of the reference)."""

    filters: int = Field(gt=0, examples=[16])
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


@register_trunk_type
class MlpTrunk(DenseOptions):
    """Flatten, then dense layers of the given widths with ReLU."""

    type: Literal["mlp"]
    widths: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)


@register_trunk_type
class CnnTrunk(DenseOptions):
    """Convolutions (see :class:`ConvLayer`), flatten, then optional dense layers."""

    type: Literal["cnn"]
    conv: list[ConvLayer] = Field(
        min_length=1, examples=[[{"filters": 16, "kernel": 3, "pool": 2}, {"filters": 32, "kernel": 3, "pool": 2}]]
    )
    dense: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)


@register_trunk_type
class ResNetTrunk(Strict):
    """A small ResNet of basic blocks (He et al., 2016): a 3x3 stem, then stages of basic blocks.

    Each stage after the first halves the resolution; the output is global-average-pooled to ``widths[-1]`` features.
    """

    type: Literal["resnet"]
    stem: int = Field(64, gt=0)
    widths: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [64, 128, 256], min_length=1)
    blocks: int = Field(1, gt=0, description="Basic blocks per stage.")


def _union(registry, tag: str):
    """The discriminated union of every options class in ``registry`` (mtlab's own, then entry-point plug-ins)."""
    classes = tuple(dict.fromkeys(cls for _, cls in registry.items()))
    return Annotated[Union[classes], Field(discriminator=tag)]  # noqa: UP007  (built at run time)


# mtlab's own plug-ins that live outside this module (datasets, trunks, model kinds) register on import, then the
# outside packages' entry points; after that the unions of every registered options class are assembled.
import mtlab.config.plugins  # noqa: E402, F401

Trunk = _union(TRUNK_TYPES, "type")
"""A trunk config: one options class per trunk type, selected by ``type``."""
TrunkConfig = MlpTrunk | CnnTrunk | ResNetTrunk  # the built-in trunk configs, for type hints


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


class HeadedModel(ModelKind):
    """A kind whose tasks each read features through a :class:`Head`, optionally cascaded by label reuse."""

    head: Head = Field(default_factory=Head, description="Head used for every task without its own entry in heads.")
    heads: dict[str, Head] = Field(default_factory=dict, description="Per-task head overrides.")
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

    def check_run(self, run: RunConfig) -> None:
        per_pixel = dense_tasks(run)
        if per_pixel:
            raise _at(
                "model.kind",
                f"tasks {per_pixel} predict a map per pixel; a {self.sharing_label()!r} model predicts one vector per "
                "example - use kind segnet, segnet_mtan or deeplab",
            )
        tasks = run.task_names
        for task in self.heads:
            if task not in tasks:
                raise _at(f"model.heads.{task}", unknown_task_key(f"model.heads.{task}", tasks))
        targets: dict[str, str] = {}
        for i, edge in enumerate(self.reuse):
            for role in ("source", "target"):
                if getattr(edge, role) not in tasks:
                    name = getattr(edge, role)
                    raise _at(f"model.reuse[{i}].{role}", unknown_task(name, tasks, f"tasks are {tasks}"))
            if edge.target in targets:
                raise _at(f"model.reuse[{i}].target", f"{edge.target!r} already reuses {targets[edge.target]!r}")
            targets[edge.target] = edge.source
            depth = len(self.heads.get(edge.target, self.head).widths)
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


@register_model_kind
class MultiTaskModel(HeadedModel):
    """Hard parameter sharing: a trunk (shared by all tasks, or one copy per task) and one head per task."""

    kind: Literal["multitask"] = "multitask"
    trunk: Trunk
    sharing: Literal["shared", "independent"] = "shared"

    def sharing_label(self) -> str:
        return self.sharing


@register_model_kind
class CrossStitchModel(HeadedModel):
    """Cross-stitch networks (Misra et al., 2016): one trunk column per task, mixed after every trunk stage."""

    kind: Literal["cross_stitch"]
    trunk: Trunk = Field(description="The architecture of each task's column.")
    self_weight: float = Field(
        0.9, gt=0.0, le=1.0, description="Initial weight of a column's own features in its stitch (paper: 0.9)."
    )


@register_model_kind
class MtanModel(HeadedModel):
    """Multi-Task Attention Network (Liu, Johns & Davison, 2019): a shared trunk, per-task soft attention masks."""

    kind: Literal["mtan"]
    trunk: Trunk = Field(description="The shared trunk whose stage outputs the attention masks select from.")


@register_model_kind
class MmoeModel(HeadedModel):
    """Multi-gate Mixture-of-Experts (Ma et al., 2018): expert trunks, one softmax gate per task."""

    kind: Literal["mmoe"]
    trunk: Trunk = Field(description="The architecture of each expert.")
    experts: int = Field(4, gt=0, description="Number of expert trunks, all shared.")


@register_model_kind
class DselectKModel(HeadedModel):
    """DSelect-k (Hazimeh et al., 2021): MMoE's experts with gates that select at most ``k`` of them, smoothly."""

    kind: Literal["dselect_k"]
    trunk: Trunk = Field(description="The architecture of each expert.")
    experts: int = Field(4, ge=2, description="Number of expert trunks, a power of 2 (2, 4, 8, ...).")
    k: int = Field(2, gt=0, description="Single-expert selectors per task: at most k experts get a non-zero weight.")
    gamma: float = Field(1.0, gt=0.0, description="Width of the smooth-step's cubic region (paper: 1).")
    routing: Literal["example", "task"] = Field(
        "example", description="'example': each input chooses its experts (a linear map of the input); 'task': one "
        "static choice per task."
    )

    def check_run(self, run: RunConfig) -> None:
        super().check_run(run)
        # The gate addresses experts by m-bit codes; with E < 2^m some codes name no expert and the paper needs an
        # extra penalty to keep selectors off them - a power of 2 needs none.
        if self.experts & (self.experts - 1):
            power = 1 << (self.experts - 1).bit_length()
            raise _at("model.experts", f"{self.experts} is not a power of 2; DSelect-k addresses experts by binary "
                      f"codes - use {power // 2} or {power}")
        if self.k > self.experts:
            raise _at("model.k", f"{self.k} selectors for {self.experts} experts; k is at most model.experts")


@register_model_kind
class LtbModel(HeadedModel):
    """Learning to Branch (Guo, Lee & Ulbricht, 2020): a tree super-graph whose child nodes choose their parent."""

    kind: Literal["ltb"]
    trunk: Trunk = Field(description="The layers of the super-graph: node n of layer s is stage s of copy n.")
    branches: int | None = Field(None, gt=0, description="Nodes per layer (default: one per task).")
    temperature: float | None = Field(
        None, gt=0.0, description="A fixed Gumbel-softmax temperature of the parent choices; default (null): "
        "LibMTL's schedule, epochs / 20 / sqrt(epoch) in epoch 1, 2, ... after the warm-up."
    )
    hard: bool = Field(
        True, description="Train with hard (one-hot, straight-through) samples and evaluate the most probable tree, "
        "as LibMTL; false: soft samples, evaluated as softmax(theta / temperature)."
    )
    warmup_fraction: float = Field(
        0.01, ge=0.0, lt=1.0, description="Share of the epochs (LibMTL: epoch < epochs / 100, so at least the "
        "first) in which every child reads the sum of all its parents, before any choice is sampled."
    )
    gumbel: bool = Field(
        True, description="Sample parent choices with Gumbel noise while training (false: noise-free choices)."
    )


@register_model_kind
class PleModel(HeadedModel):
    """Progressive Layered Extraction (Tang et al., 2020): levels of task-specific and shared experts with gates.

    One level is Customized Gate Control (CGC). Level ``l``'s experts are built for the output of level ``l - 1``
    (its last stage, before flattening), so a level is any trunk config that accepts that shape.
    """

    kind: Literal["ple"]
    levels: list[Trunk] = Field(min_length=1, description="Expert architecture per level (one level = CGC).")
    task_experts: int = Field(1, gt=0, description="Experts per task per level.")
    shared_experts: int = Field(1, gt=0, description="Shared experts per level.")

    trunk_field: ClassVar[str] = "levels"

    def trunk_configs(self) -> list[TrunkConfig]:
        return list(self.levels)

    def check_run(self, run: RunConfig) -> None:
        super().check_run(run)
        for i, (before, level) in enumerate(zip(self.levels, self.levels[1:], strict=False), start=1):
            flat = before.type == "mlp" or (before.type == "cnn" and bool(before.dense))
            if flat and level.type != "mlp":
                raise _at(
                    f"model.levels[{i}]",
                    f"a {level.type} level needs a feature map, but level {i - 1} ends with dense layers; "
                    "end the earlier levels with convolutions or make this level an mlp",
                )

    def sharing_label(self) -> str:
        return "cgc" if len(self.levels) == 1 else f"ple ({len(self.levels)} levels)"


@register_model_kind
class PairModel(ModelKind):
    """Siamese digit comparison (task ``leq``; with the auxiliary loss also ``digit_a`` and ``digit_b``).

    Each 14x14 image goes through a branch (trunk, then a linear layer to 10 digit logits); the comparison head
    reads both branches' logits (20 values). ``weight_sharing``: one branch used twice instead of two branches.
    """

    kind: Literal["pairs"]
    branch: Trunk
    head: Head = Field(default_factory=Head)
    weight_sharing: bool = False

    trunk_field: ClassVar[str] = "branch"
    reads_pairs: ClassVar[bool] = True

    def check_run(self, run: RunConfig) -> None:
        if not run.data.gives_pairs:
            raise _at("model.kind", "'pairs' models need data.dataset 'mnist-pairs'")
        if "leq" not in run.task_names:
            raise _at("tasks", "a pair model is trained on leq; add the digit tasks for the auxiliary loss")

    def sharing_label(self) -> str:
        return f"weight_sharing={self.weight_sharing}"


def model_kind(kind: str) -> type[ModelKind]:
    """The config class of model kind ``kind`` (``multitask`` ...); an unknown kind is a :class:`KeyError`."""
    return MODEL_KINDS.get(kind)


# --------------------------------------------------------------------------------------------- loss, optim, train


class OptimConfig(Strict):
    added_options: ClassVar[tuple[str, ...]] = ("step_offset",)
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum (ignored by Adam/AdamW).")
    nesterov: bool = False
    schedule: Literal["constant", "cosine", "onecycle", "step"] = "constant"
    step_epochs: int = Field(
        100, gt=0, description="Step schedule: multiply the learning rate by step_gamma every this many epochs."
    )
    step_gamma: float = Field(0.5, gt=0.0, le=1.0, description="Step schedule: the factor (PyTorch's StepLR gamma).")
    step_offset: int = Field(
        0, ge=0, description="Step schedule: the drops come this many epochs earlier - before 0-based epochs "
        "step_epochs - offset, 2 step_epochs - offset, ... (Sener & Koltun's loop: 1); 0: PyTorch's StepLR."
    )
    warmup_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="One-cycle: fraction of steps spent warming up.")
    grad_clip: float | None = Field(None, gt=0.0, description="Clip the global gradient norm to this value.")

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
        parts = metric.split(".")
        ok = parts == ["val", "loss"] or (len(parts) == 3 and parts[0] == "val" and all(parts))
        if not ok:
            raise ValueError(f"{metric!r} is not 'val.loss' or 'val.<task>.<metric>' (early stopping never reads test)")
        return metric

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


DataConfig = _union(DATASETS, "dataset")
"""The ``data`` section: one options class per dataset, selected by ``dataset``."""
ModelConfig = _union(MODEL_KINDS, "kind")
"""The ``model`` section: one options class per model kind, selected by ``kind`` (default ``multitask``)."""


class RunConfig(Strict):
    """Everything that defines one training run; the run directory stores it resolved."""

    name: str = "run"
    seed: int = Field(0, ge=0)
    data: DataConfig
    tasks: list[str] | None = Field(None, description="Tasks to train (default: all of the dataset's tasks).")
    model: ModelConfig = Field(examples=[{"trunk": {"type": "mlp", "widths": [64]}}])
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
        self._check_dense_augment(tasks)
        self.model.check_run(self)
        stop = self.train.early_stopping
        if stop is not None:
            if self.data.val_fraction == 0:
                raise _at("train.early_stopping", "needs a validation split (data.val_fraction > 0)")
            if stop.task is not None:
                if stop.task not in tasks:
                    raise _at(
                        "train.early_stopping.metric",
                        unknown_task(stop.task, tasks, f"the trained tasks are {tasks}"),
                    )
                self.metric_direction(stop.metric)  # an unknown metric of the task's type fails here, naming them
        return self

    def task_type_names(self) -> dict[str, str]:
        """Trained task -> its task type's name."""
        types = self.data.task_types()
        return {t: types[t] for t in self.task_names}

    def metric_direction(self, key: str) -> str:
        """``"min"`` or ``"max"`` for a history key such as ``val.loss``, ``val.age.mae``, ``test.gender.auroc``;
        a metric the task's type does not report is a :class:`KeyedError` at ``train.early_stopping.metric``."""
        from mtlab.tasks import TASK_TYPES

        parts = key.split(".")
        if len(parts) == 2 and parts[1] == "loss":
            return "min"
        task_type = TASK_TYPES.get(self.data.task_types()[parts[1]])
        if parts[2] not in task_type.metric_names():
            raise _at(
                "train.early_stopping.metric",
                f"{parts[1]} is a {task_type.name} task, which reports {task_type.metric_names()}, not {parts[2]!r}",
            )
        return task_type.direction(parts[2])
