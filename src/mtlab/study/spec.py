"""Study specs: a base run config, the axes and variants that change it, the seeds, the control and the budgets.

A study expands into runs (:func:`expand`): every variant x every point of the grid x every seed. Each run's id is a
hash of its resolved config, so a run already stored under that id is never trained again - also when an edited
study is run again into its directory (which takes ``--redefine``: :mod:`mtlab.study.definition`), where only the
runs that did not exist before train.

Axes map a dotted config key to values. A list gives values that are their own labels (``[0.3, 0.7]``); a mapping
gives readable labels (``{independent: independent, "coarse->fine": "coarse->fine"}``). An axis whose name is not a
config key (``aux``) is a bundle: each of its values maps several dotted keys to values
(``{"aux off": {tasks: [leq]}, "aux on": {loss.weights: {leq: 0.5, digit_a: 0.25, digit_b: 0.25}}}``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from mtlab.config.load import (
    Origin,
    Origins,
    Overrides,
    Parts,
    YamlFile,
    format_error,
    read_yaml_file,
    set_dotted,
    validate_run,
)
from mtlab.config.schema import RunConfig, Strict
from mtlab.errors import ConfigError, did_you_mean
from mtlab.study.reference import Reference, check_reference
from mtlab.weighting.sets import method_set

Axis = dict[str, Any]  # label -> value (lists are normalised to this form)

AXIS_SETS: dict[str, Callable[[str], list[Any]]] = {"loss.method": method_set}
"""Config keys whose axis may name a set of values instead of listing them: ``loss.method: all`` (every registered
weighting method, plug-ins included), ``gradient``, ``loss``, ``all except fixed`` (:mod:`mtlab.weighting.sets`).
The set is expanded here, when the spec is read, so a stored study definition lists the names it ran."""


def _as_axis(values: Any, key: str = "") -> Axis:
    if isinstance(values, str) and key in AXIS_SETS:
        try:
            return {_label(v): v for v in AXIS_SETS[key](values)}
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
    if isinstance(values, dict):
        if not values:
            raise ValueError("an axis needs at least one value")
        return {str(label): value for label, value in values.items()}
    if isinstance(values, list):
        if not values:
            raise ValueError("an axis needs at least one value")
        return {_label(v): v for v in values}
    sets = f" (or, for {', '.join(AXIS_SETS)}, a set such as 'all')" if isinstance(values, str) else ""
    raise ValueError(f"an axis is a list of values or a mapping label -> value{sets}, got {type(values).__name__}")


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class Variant(Strict):
    """A named change of the base config: fixed overrides (``set``) and, optionally, its own grid axes."""

    added_options: ClassVar[tuple[str, ...]] = ("budgets",)  # stored definitions of earlier studies stay the same
    set: dict[str, Any] = Field(default_factory=dict, description="Dotted config key -> value.")
    grid: dict[str, Axis] = Field(default_factory=dict, description="Axes that apply to this variant only.")
    budgets: list[str] | None = Field(
        None, description="The budgets this variant runs under (default: every budget); e.g. a paper's own methods "
        "that only its protocol's budget runs."
    )

    @field_validator("grid", mode="before")
    @classmethod
    def _axes(cls, grid: Any) -> Any:
        return {k: _as_axis(v, k) for k, v in grid.items()} if isinstance(grid, dict) else grid


class Budget(Strict):
    """A named size of the study (``quick`` = minutes on a 2-core CPU, ``full`` = the original protocol)."""

    description: str = ""
    seeds: int | list[int] | None = Field(None, description="Overrides the study's seeds.")
    set: dict[str, Any] = Field(default_factory=dict, description="Dotted overrides applied to every run.")


class Control(Strict):
    """What each variant is compared with.

    ``variant``: one variant for all. ``match``: per variant, the variant that has the same labels except on the
    given axes, where it has the given labels (e.g. per net: sharing off and aux off). ``per_task``: for each task,
    the variant that is its baseline (e.g. the single-task models).
    """

    variant: str | list[str] | None = Field(
        None, description="The control variant, or a list: the first of them that the budget runs (a budget whose "
        "variants differ, see Variant.budgets)."
    )
    match: dict[str, str] | None = None
    per_task: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"variant": value} if isinstance(value, (str, list)) else value

    @model_validator(mode="after")
    def _exactly_one(self) -> Control:
        if sum(x is not None for x in (self.variant, self.match, self.per_task)) != 1:
            raise ValueError("give exactly one of variant, match, per_task")
        return self


class StudySpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    base: dict[str, Any] = Field(
        description="The run config every run starts from: its keys, or the path of a run config file (relative to "
        "the study file), whose content the study stores."
    )
    grid: dict[str, Axis] = Field(default_factory=dict, description="Axes applied to every variant.")
    variants: dict[str, Variant] = Field(default_factory=dict)
    seeds: int | list[int] = Field(3, description="A count (seeds 0..n-1) or an explicit list.")
    control: Control | None = None
    budgets: dict[str, Budget] = Field(default_factory=dict)
    default_budget: str | None = None
    reference: Reference | None = Field(None, description="The original study's numbers and claims.")
    _base: Path | None = PrivateAttr(None)  # run configs' file paths are relative to it: the base file's directory
    _file: YamlFile | None = PrivateAttr(None)  # the spec file, to name the line of a bad value in errors
    _base_file: YamlFile | None = PrivateAttr(None)  # the run config file ``base`` named, if it named one

    @field_validator("grid", mode="before")
    @classmethod
    def _axes(cls, grid: Any) -> Any:
        return {k: _as_axis(v, k) for k, v in grid.items()} if isinstance(grid, dict) else grid

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: int | list[int]) -> int | list[int]:
        if isinstance(seeds, int) and seeds < 1:
            raise ValueError("needs at least one seed")
        if isinstance(seeds, list) and (not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0):
            raise ValueError("a list of distinct non-negative seeds")
        return seeds

    @model_validator(mode="after")
    def _budget_names(self) -> StudySpec:
        if self.default_budget is not None and self.default_budget not in self.budgets:
            raise ValueError(f"default_budget {self.default_budget!r} is not one of the budgets {list(self.budgets)}")
        for name, variant in self.variants.items():
            unknown = [b for b in variant.budgets or [] if b not in self.budgets]
            if unknown:
                raise ValueError(f"variant {name!r}: budgets {unknown} are not among the budgets {list(self.budgets)}")
        return self


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: its variant, its labels per axis, its seed, and its resolved, validated config."""

    run_id: str
    variant: str
    labels: dict[str, str]
    seed: int
    config: RunConfig


def is_bundle(axis: str) -> bool:
    """An axis named by something other than a config key (``aux``) sets several keys per value."""
    return axis.split(".")[0] not in RunConfig.model_fields


def run_id(config: RunConfig) -> str:
    """A stable id from the resolved config (every default filled in): same config -> same id."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def seed_list(seeds: int | list[int]) -> list[int]:
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)


def expand(spec: StudySpec, budget: str | None = None, overrides: dict[str, Any] | None = None) -> list[RunSpec]:
    """Every run of the study under ``budget``, variants in spec order, then grid points, then seeds.

    ``overrides`` (dotted key -> value) apply to every run, after the budget, variant and axes; an error in a value
    they set is blamed on them (on the command line, for :func:`~mtlab.config.load.parse_overrides`' labels), one in
    a value of the spec file on its line.
    """
    overrides_for_all = overrides if isinstance(overrides, Overrides) else Overrides((overrides or {}).items())
    name_of_budget = budget or spec.default_budget
    chosen = _budget(spec, budget)
    seeds = seed_list(chosen.seeds if chosen and chosen.seeds is not None else spec.seeds)
    variants = spec.variants or {"": Variant()}
    runs: list[RunSpec] = []
    for variant_name, variant in variants.items():
        if variant.budgets is not None and name_of_budget not in variant.budgets:
            continue  # this variant runs under other budgets only
        axes = {key: (("grid", key), axis) for key, axis in spec.grid.items()}
        axes.update({key: (("variants", variant_name, "grid", key), axis) for key, axis in variant.grid.items()})
        for point in _grid_points({key: axis for key, (_, axis) in axes.items()}):
            labels = {"variant": variant_name} if variant_name else {}
            labels.update({key: label for key, (label, _) in point.items()})
            name = ", ".join(v for v in labels.values())
            # dotted key -> (value, where the spec says it): budget, then variant, then axes, then the overrides
            setters: dict[str, tuple[Any, Origin]] = {}
            if chosen:
                setters.update(_from_spec(spec, chosen.set, ("budgets", str(name_of_budget), "set")))
            setters.update(_from_spec(spec, variant.set, ("variants", variant_name, "set")))
            for key, (label, value) in point.items():
                where = (*axes[key][0], list(axes[key][1]).index(label))
                if is_bundle(key):
                    if not isinstance(value, dict):
                        raise ConfigError(
                            f"study {spec.name}: axis {key!r} value {label!r} must map config keys "
                            "to values (an axis whose name is not a config key sets several keys)"
                        )
                    setters.update(_from_spec(spec, value, where))
                else:
                    setters[key] = (value, _spec_origin(spec, where))
            setters.update({key: (value, overrides_for_all.origin(key)) for key, value in overrides_for_all.items()})
            for seed in seeds:
                config = _resolve(spec, {**setters, "seed": (seed, Origin(None))}, name)
                runs.append(RunSpec(run_id(config), name or "all", labels, seed, config))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"study {spec.name}: two variants resolve to the same run config; make them differ")
    return runs


def load_study_spec(path: str | Path) -> StudySpec:
    """The study of a YAML file, every run config of every budget validated. ``base: run.yaml`` reads that run
    config (a path relative to the study file); the spec holds its content, so a later edit of the file is a change
    of the study's definition. File paths in the run configs are relative to the file the base came from: the run
    config file, as `mtlab train` reads them, else the study file."""
    raw, file = read_yaml_file(path)
    base_file = None
    if isinstance(raw.get("base"), str):
        raw["base"], base_file = _read_base(Path(path), raw["base"], file)
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_error(e, raw, model=StudySpec, origins=Origins(file))) from None
    spec._base = Path(base_file.name if base_file is not None else path).resolve().parent
    spec._file = file
    spec._base_file = base_file
    # Validates every run config of the default budget (or of the reference's, whose variants it names) up front.
    named = spec.reference.budget if spec.reference is not None else None
    check_reference(spec, expand(spec, named if named in spec.budgets else None))  # an unknown one: its own error
    for budget in spec.budgets:
        expand(spec, budget)
    return spec


def _read_base(study: Path, name: str, file: YamlFile) -> tuple[dict[str, Any], YamlFile]:
    """The run config file a study's ``base`` names (relative to the study file) and its node tree."""
    where = file.where(("base",))
    base = Path(name).expanduser()
    base = base if base.is_absolute() else study.resolve().parent / base
    if not base.is_file():
        problem = "is a directory" if base.is_dir() else "no such file"
        raise ConfigError(
            f"{where}: base: {name}: {problem} ({base}); give a run config file (as `mtlab train` takes), relative "
            "to the study file, or the run config's keys"
        )
    try:
        return read_yaml_file(base)
    except ConfigError as e:
        raise ConfigError(f"{where}: base: {e}") from None


def _spec_origin(spec: StudySpec, parts: Parts) -> Origin:
    """The line of the spec file at ``parts`` (no origin for a spec that was not read from a file)."""
    return Origin(spec._file.where(parts) if spec._file is not None else None)


def _from_spec(spec: StudySpec, values: dict[str, Any], under: Parts) -> dict[str, tuple[Any, Origin]]:
    return {key: (value, _spec_origin(spec, (*under, key))) for key, value in values.items()}


def _budget(spec: StudySpec, budget: str | None) -> Budget | None:
    name = budget or spec.default_budget
    if name is None:
        return None
    if name not in spec.budgets:
        known = did_you_mean(name, spec.budgets, f"budgets: {list(spec.budgets)}")
        raise ConfigError(f"budget {name!r} is not defined for study {spec.name}; {known}")
    return spec.budgets[name]


def _grid_points(axes: dict[str, Axis]) -> list[dict[str, tuple[str, Any]]]:
    points: list[dict[str, tuple[str, Any]]] = [{}]
    for key, axis in axes.items():
        points = [{**p, key: (label, value)} for p in points for label, value in axis.items()]
    return points


def _resolve(spec: StudySpec, setters: dict[str, tuple[Any, Origin]], variant: str) -> RunConfig:
    """The run config of the base with ``setters`` (dotted key -> value and its origin) applied in order. An error
    starts with its origin (the spec file's line, the command line), then the variant (unless it came from the
    command line, which set it for every variant)."""
    raw = copy.deepcopy(spec.base)
    origins = Origins(spec._base_file) if spec._base_file is not None else Origins(spec._file, under=("base",))
    context = f"variant {variant or 'base'!r}: "
    if spec._file is None:
        context = f"study {spec.name}, {context}"
    for key, (value, origin) in setters.items():
        try:
            set_dotted(raw, key, value)
        except ConfigError as e:
            where = f"{origin.label}: " if origin.label is not None else ""
            raise ConfigError(f"{where}{'' if origin.alone else context}{e}") from None
        origins.override(key, origin, value)
    raw.setdefault("name", spec.name)
    return validate_run(raw, spec._base, origins, prefix=context)
