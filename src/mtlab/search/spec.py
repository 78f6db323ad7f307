"""Search specs: a base run config, a search space over architectures and learning rate, the objective, the pruner,
the number of trials and the budgets - YAML validated with pydantic, every error naming its key path.

A spec gives either a ``space`` (``space.type``):

- ``mlp``: ``depth`` hidden layers, each ``width`` units (drawn per layer), ReLU; then the task's linear head.
- ``cnn``: ``depth`` convolutions, each ``filters`` filters (per layer) of a ``kernel`` size drawn from a list (per
  layer), ReLU, a ``pool`` x ``pool`` max-pool after each of the first ``pooled_layers``; then the linear head.

either of which may also draw the learning rate (``lr``), or ``candidates``: a fixed set of named architectures
(dotted overrides of the base config), each trained once - an exhaustive grid, used for the single-layer MLP vs CNN
comparison. The objective is a *validation* metric of the
selected epoch, ``val.<task>.<metric>`` with any metric the task's type reports (default: the first task's primary
metric, ``val.<first task>.acc`` for classification), optimised in the metric's direction (``acc`` maximised,
``loss`` and ``mae`` minimised); the test split is never used to choose.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from mtlab.builtin_files import builtin_yaml_files
from mtlab.config.load import Origins, format_error, parse_config, read_yaml_file, set_dotted
from mtlab.config.schema import RunConfig, Strict
from mtlab.errors import ConfigError, did_you_mean


class IntRange(Strict):
    """Integers from ``low`` to ``high`` inclusive, every ``step``-th, or log-uniform (``log``; step must be 1)."""

    low: int = Field(gt=0)
    high: int = Field(gt=0)
    step: int = Field(1, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        if self.log and self.step != 1:
            raise ValueError("a log-uniform range takes no step")
        if (self.high - self.low) % self.step:
            raise ValueError(f"high - low ({self.high - self.low}) is not a multiple of step {self.step}")
        return self


class FloatRange(Strict):
    """Reals from ``low`` to ``high``, log-uniform by default."""

    low: float = Field(gt=0.0)
    high: float = Field(gt=0.0)
    log: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        return self


class MlpSpace(Strict):
    """Dense networks: ``depth`` hidden layers of ``width`` units each (one draw per layer)."""

    type: Literal["mlp"]
    depth: IntRange = Field(description="Number of hidden layers.")
    width: IntRange = Field(description="Units of each hidden layer.")
    lr: FloatRange | None = Field(None, description="Learning rate range (default: the base config's).")


class CnnSpace(Strict):
    """Convolutional networks: ``depth`` conv layers, filters and kernel size drawn per layer."""

    type: Literal["cnn"]
    depth: IntRange = Field(description="Number of convolution layers.")
    filters: IntRange = Field(description="Filters of each convolution layer.")
    kernel: list[Annotated[int, Field(gt=0)]] = Field([3], min_length=1, description="Kernel sizes to choose from.")
    padding: Literal["same", "valid"] = "same"
    pool: int = Field(2, gt=0, description="Max-pool size after each of the first pooled_layers convolutions.")
    pooled_layers: int = Field(2, ge=0)
    lr: FloatRange | None = Field(None, description="Learning rate range (default: the base config's).")


Space = Annotated[MlpSpace | CnnSpace, Field(discriminator="type")]


class PrunerSpec(Strict):
    """Stop unpromising trials early on their per-epoch validation objective.

    ``median`` (Optuna's MedianPruner; the "median stopping rule" of Golovin et al., 2017): prune a trial whose value
    at an epoch is worse than the median of earlier trials at that epoch, after ``startup_trials`` trials and
    ``warmup_epochs`` epochs. ``successive-halving`` (asynchronous SHA; Li et al., 2020): rungs at ``min_epochs`` x
    ``reduction_factor``^k epochs, keeping the top 1/``reduction_factor`` at each rung.
    """

    type: Literal["median", "successive-halving", "none"] = "median"
    startup_trials: int = Field(5, ge=0)
    warmup_epochs: int = Field(1, ge=0)
    min_epochs: int = Field(1, gt=0)
    reduction_factor: int = Field(3, ge=2)


class SearchBudget(Strict):
    """A named size of the search: its trial count and dotted overrides of the base config."""

    description: str = ""
    trials: int | None = Field(None, gt=0)
    set: dict[str, Any] = Field(default_factory=dict)


class SearchSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    base: dict[str, Any] = Field(description="The run config every trial starts from (its model is replaced).")
    space: Space | None = Field(None, description="Architectures to draw from (or give candidates).")
    candidates: dict[str, dict[str, Any]] | None = Field(
        None, min_length=1, description="Named architectures (dotted key -> value), each trained once."
    )
    objective: str | None = Field(
        None,
        description="Validation metric to optimise, val.<task>.<metric> with any metric of the task's type, in its "
        "direction (default: the first task's primary metric, val.<first task>.acc for classification).",
    )
    trials: int = Field(20, gt=0)
    seed: int = Field(0, ge=0, description="Seed of the sampler and of every trial's training run.")
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    retrain: bool = Field(True, description="Retrain the best and worst trial of each depth and test them once.")
    budgets: dict[str, SearchBudget] = Field(default_factory=dict)
    default_budget: str | None = None

    @field_validator("objective")
    @classmethod
    def _validation_metric(cls, objective: str | None) -> str | None:
        if objective is None:
            return None
        parts = objective.split(".")
        if len(parts) != 3 or parts[0] != "val" or not all(parts):
            raise ValueError(f"{objective!r} must be 'val.<task>.<metric>', e.g. 'val.digit.acc' (never a test metric)")
        return objective

    @model_validator(mode="after")
    def _budget_names(self) -> SearchSpec:
        if (self.space is None) == (self.candidates is None):
            raise ValueError("give exactly one of space and candidates")
        if self.default_budget is not None and self.default_budget not in self.budgets:
            raise ValueError(f"default_budget {self.default_budget!r} is not one of {list(self.budgets)}")
        return self

    def objective_key(self) -> str:
        """The objective, defaulting to the validation value of the primary metric of the base config's first
        task (``val.<task>.acc`` for a classification task)."""
        if self.objective is not None:
            return self.objective
        config = self.sample_config()
        task = config.task_names[0]
        return f"val.{task}.{_task_type(config, task).primary}"

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """Optuna's direction: the objective metric's, as its task's type declares it."""
        _, task, metric = self.objective_key().split(".")
        return "maximize" if _task_type(self.sample_config(), task).direction(metric) == "max" else "minimize"

    def sample_config(self) -> RunConfig:
        """A config of the space (the smallest architecture, or the first candidate), to check the base."""
        from mtlab.search.space import fixed_config

        return fixed_config(self)

    def fingerprint(self) -> str:
        """What must not change when a stored search is resumed: everything but the trial count and budgets."""
        kept = self.model_dump(mode="json", exclude={"trials", "budgets", "default_budget", "description", "retrain"})
        return json.dumps(kept, sort_keys=True)


def with_budget(spec: SearchSpec, budget: str | None, overrides: dict[str, Any] | None = None) -> SearchSpec:
    """The spec with a budget's trial count and overrides (and then ``overrides``) applied to its base config."""
    name = budget or spec.default_budget
    base = copy.deepcopy(spec.base)
    trials = spec.trials
    if name is not None:
        if name not in spec.budgets:
            known = did_you_mean(name, spec.budgets, f"budgets: {sorted(spec.budgets)}")
            raise ConfigError(f"search {spec.name}: unknown budget {name!r}; {known}")
        chosen = spec.budgets[name]
        trials = chosen.trials or trials
        for key, value in chosen.set.items():
            set_dotted(base, key, value)
    for key, value in (overrides or {}).items():
        set_dotted(base, key, value)
    return validate_spec(spec.model_copy(update={"base": base, "trials": trials}), where=spec.name)


def validate_spec(spec: SearchSpec, where: str) -> SearchSpec:
    """Check that every architecture the space can produce is a valid run config with a validation split."""
    from mtlab.search.space import extreme_configs

    for label, raw in extreme_configs(spec):
        try:
            config = parse_config(raw)
        except ConfigError as e:
            raise ConfigError(f"{where}: {label}: {e}") from None
        if config.data.val_fraction == 0:
            raise ConfigError(f"{where}: base.data.val_fraction: a search needs a validation split (> 0)")
        _check_feature_map(config, label, where)
    _, task, metric = spec.objective_key().split(".")
    config = spec.sample_config()
    if task not in config.task_names:
        raise ConfigError(f"{where}: objective: unknown task {task!r}; trained: {config.task_names}")
    kind = _task_type(config, task)
    if metric not in kind.metric_names():
        raise ConfigError(
            f"{where}: objective: unknown metric {metric!r}; {task} is a {kind.name} task, which reports "
            f"{kind.metric_names()}"
        )
    return spec


def _task_type(config: RunConfig, task: str):
    """The :class:`~mtlab.tasks.TaskType` of ``task`` in ``config``."""
    from mtlab.tasks import TASK_TYPES

    return TASK_TYPES.get(config.task_type_names()[task])


def _check_feature_map(config: RunConfig, label: str, where: str) -> None:
    """A convolution stack that leaves no pixels is a spec error, found now rather than in trial 17."""
    from mtlab.config.schema import CnnTrunk
    from mtlab.models.layers import conv_output_size

    trunk = config.model.trunk_configs()[0]  # the one that reads the images
    shape = config.data.input_shape()  # (C, H, W) images; None where only the files tell
    if not isinstance(trunk, CnnTrunk) or shape is None or len(shape) != 3:
        return
    size = min(shape[1:])
    for i, layer in enumerate(trunk.conv):
        size = conv_output_size(size, layer)
        if size < 1:
            raise ConfigError(f"{where}: {label}: conv layer {i + 1} leaves no pixels; pool fewer layers or pad")


def load_search_spec(path: str | Path) -> SearchSpec:
    raw, file = read_yaml_file(path)
    try:
        spec = SearchSpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_error(e, raw, model=SearchSpec, origins=Origins(file))) from None
    validate_spec(spec, where=str(path))
    for budget in spec.budgets:
        with_budget(spec, budget)
    return spec


def builtin_search_paths() -> dict[str, Path]:
    """Search name -> YAML file, for every search spec shipped in ``mtlab/searches``."""
    return builtin_yaml_files("searches")


def find_search(name_or_path: str) -> tuple[SearchSpec, Path]:
    """A built-in search spec by name, or a search YAML by path."""
    builtin = builtin_search_paths()
    path = builtin.get(name_or_path) or Path(name_or_path)
    if not path.exists():
        known = did_you_mean(name_or_path, builtin, f"built-in: {sorted(builtin)}", quote=False)
        raise ConfigError(f"{name_or_path}: no such search file and no built-in search of that name; {known}")
    return load_search_spec(path), path
