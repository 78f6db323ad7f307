"""The original study's numbers and claims as data: the ``reference:`` section of a study spec.

A study that reproduces a published one says what that study reported, per variant and task, and which of its
conclusions the report should test::

    reference:
      source: Albergoni, Bouvet & Feo (2019), EPFL EE-559 mini-project 1
      measure: test accuracy at the final epoch, mean +- sample std over 10 runs
      budget: full                       # the budget that follows the original protocol
      differences: [the original drew fresh pairs for every run; here the variants of a seed share them]
      values:
        "deep FC, sharing off, aux on":
          leq: {acc: {mean: 89.08, std: 1.36, n: 10}}   # accuracy in percent; a bare number is a mean alone
          # any metric of the task's type: acc, f1, auroc in percent; loss, mae, rmse, r2 as they are
      claims:
        - claim: auxiliary loss helps more than weight sharing on every net
          compare:
            - {variant: "deep FC, sharing off, aux on", vs: "deep FC, sharing on, aux off", task: leq}

Multi-task benchmarks summarise a method by Δm (Maninis et al. 2019): the mean over every metric k of the relative
change against single-task baselines, ``100 * (-1)^{l_k} (M_k - B_k) / B_k`` with l_k = 1 when lower is better. The
papers compute it against their own single-task numbers, which they publish; ``baselines`` holds those, ``single_task``
names this study's single-task variant per task, and ``delta_m`` the published Δm per variant, so the report gives
each variant's Δm against both baselines (:mod:`mtlab.report.reference`)::

      baselines:
        source: Nash-MTL code, experiments/nyuv2/utils.py BASE
        values: {segmentation: {miou: 38.30, pixel_acc: 63.76}, depth: {abs_err: 0.6754, rel_err: 0.2780}}
      single_task: {segmentation: "single segmentation", depth: "single depth"}
      delta_m: {"nash_mtl": {mean: 4.04, note: "Table 2"}}      # percent, mtlab's sign (the papers': -4.04)

The papers' own tables go under ``published`` (:class:`Published`): the papers' method names mapped to this study's
variants, and each table as printed - its source (paper and table), protocol, the budget of this study that follows
it (null: none does), what its ``±`` is, whether it is a secondary copy, its single-task row and one row of quoted
cells per method (``"38.88 ±0.54"``; quoting keeps the printed digits, which bound how far rounding moved them)::

      published:
        methods: {LS: "mtan, fixed", GO4Align: null}
        tables:
          - source: Navon et al. (Nash-MTL, ICML 2022), Table 2
            protocol: SegNet-MTAN, 200 epochs, the mean of the last 10 epochs' test evaluations
            budget: full
            columns: [segmentation.miou, depth.abs_err, mr, delta_m]   # task.metric, or SUMMARY_COLUMNS
            single_task: ["38.30", "0.6754", "", ""]
            rows: {LS: ["39.29", "0.5493", "8.11", "5.59"]}

The report section that uses them is :mod:`mtlab.report.published`.

Variant names are the run names of the expanded study (the variant, then the grid labels, joined by ", "), so
:func:`check_reference` validates the section against the expanded runs, naming the key of anything unknown - a
metric too, which must be one the task's type reports. A comparison's metric defaults to the task's primary one
(``acc`` for classification, ``mae`` for regression) and is tested in the metric's direction.
The report section that uses it is :mod:`mtlab.report.reference`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from mtlab.config.base import Strict
from mtlab.errors import ConfigError

if TYPE_CHECKING:  # spec.py imports this module for the field type
    from mtlab.study.spec import RunSpec, StudySpec

EXECUTION_KEYS = ("train.device", "train.threads", "train.eval_batch_size", "train.compile", "train.channels_last",
                  "train.diagnostics")  # fmt: skip
"""Config keys (and everything under them) that change where and how fast a run trains, or what it measures on the
side, not what it learns (up to float rounding): overriding them keeps a study comparable with the original.
``train.precision`` is not one of them: bf16 or fp16 arithmetic is a change of protocol."""

Metric = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]
"""A metric of the task's type (``acc``, ``loss``, ``mae`` ...), checked against the type by :func:`check_reference`."""


class OriginalValue(Strict):
    """One number the original reported - a fraction metric (acc, f1, auroc) in percent, any other as it is -
    with its spread where it gives one."""

    mean: float
    std: float | None = Field(None, ge=0.0, description="Sample standard deviation over the original's runs.")
    n: int | None = Field(None, ge=1, description="How many runs the original averaged (1: a single run).")
    note: str = Field("", description="What is special about this number (e.g. the mean of two images).")

    @model_validator(mode="before")
    @classmethod
    def _bare_number(cls, value: object) -> object:
        # ``leq: {acc: 82.56}`` gives a mean alone.
        return {"mean": value} if isinstance(value, (int, float)) and not isinstance(value, bool) else value


class Comparison(Strict):
    """``variant`` is better than ``vs`` on ``task`` (``expect: better``), or at least not worse (``not_worse``),
    by ``metric`` in its direction (default: the task's primary metric)."""

    variant: str
    vs: str
    task: str
    metric: Metric | None = None
    expect: Literal["better", "not_worse"] = "better"

    @model_validator(mode="after")
    def _two_variants(self) -> Comparison:
        if self.variant == self.vs:
            raise ValueError(f"compares {self.variant!r} with itself")
        return self


class Claim(Strict):
    """A conclusion of the original study and the paired comparisons that must all hold for it to hold."""

    claim: str = Field(min_length=1)
    compare: list[Comparison] = Field(min_length=1)


class Baselines(Strict):
    """The single-task numbers the original computes Δm against, per task and metric (in the display units of
    ``values``), and where they are published."""

    source: str = Field(min_length=1, description="Where the numbers are published (table, or file of the code).")
    values: dict[str, dict[Metric, float]] = Field(
        min_length=1, description="Task -> metric -> single-task value; Δm averages over every metric given here."
    )


class Reference(Strict):
    """What the original study reported and concluded, and how its protocol differs from this study's."""

    source: str = Field(min_length=1, description="Who reported the numbers, where.")
    measure: str = Field("", description="What the numbers are (split, epoch, statistic).")
    budget: str | None = Field(None, description="The budget that follows the original protocol.")
    differences: list[str] = Field(default_factory=list, description="Known differences of the original protocol.")
    values: dict[str, dict[str, dict[Metric, OriginalValue]]] = Field(
        default_factory=dict,
        description="Variant -> task -> metric (acc, f1, auroc in percent; loss, mae, rmse, r2 as they are) -> value.",
    )
    claims: list[Claim] = Field(default_factory=list)
    baselines: Baselines | None = Field(None, description="The original's single-task numbers Δm is computed against.")
    single_task: dict[str, str] = Field(
        default_factory=dict, description="Task -> this study's single-task variant of it (for Δm against our own)."
    )
    delta_m: dict[str, OriginalValue] = Field(
        default_factory=dict,
        description="Variant -> the Δm (percent) the original reports for it, in mtlab's sign: higher is better (the "
        "negation of the loss-weighting papers' Δm, lower is better; their tables go under 'published').",
    )
    published: Published | None = Field(
        None, description="The papers' own tables (per method and metric), each under its protocol and budget."
    )

    @model_validator(mode="after")
    def _delta_m_needs_baselines(self) -> Reference:
        if (self.delta_m or self.single_task) and self.baselines is None:
            raise ValueError("delta_m and single_task need baselines: the metrics Δm averages over")
        if self.baselines is not None and self.single_task:
            missing = [t for t in self.baselines.values if t not in self.single_task]
            if missing:
                raise ValueError(f"single_task names no variant for the baseline tasks {missing}")
        return self


# ------------------------------------------------------------------------------------ the papers' own tables

SUMMARY_COLUMNS = {
    "delta_m": "Δm (%) as the paper prints it: the mean over the table's metrics of the relative change against its "
    "single-task row, lower is better",
    "mr": "mean rank among the table's methods (not compared: it depends on which methods a paper ranks)",
    "avg_error": "average error (%) over every task: 100 minus the mean accuracy",
    "delta_p": "Δp (%) of LibMTL / DB-MTL: the mean over tasks of the relative change against single-task networks, "
    "higher is better",
}
"""The columns of a published table that are not one task's metric, and what each holds."""

_PRINTED = re.compile(r"^\s*([+-]?\d+(?:\.(\d*))?)\s*(?:±\s*(\d+(?:\.(\d*))?))?\s*$")


@dataclass(frozen=True)
class Printed:
    """One cell of a published table as the paper prints it: its value, its spread (the ``±`` part, None without
    one) and how many decimals each was printed with (what rounding can have moved them by)."""

    value: float
    spread: float | None
    decimals: int
    spread_decimals: int | None

    @property
    def half_unit(self) -> float:
        """Half a unit of the last printed digit: the most rounding to print can have moved the value."""
        return 0.5 * 10.0 ** -self.decimals


def parse_printed(text: str | float) -> Printed | None:
    """``"38.88 ±0.54"`` -> Printed(38.88, 0.54, 2, 2); ``""`` (an empty cell) -> None; ValueError otherwise.
    A number that YAML gave as a float loses its trailing zeros: quote the cells to keep what the paper printed."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = repr(float(text))
    text = str(text)
    if not text.strip():
        return None
    match = _PRINTED.match(text.replace("−", "-").replace("+-", "±").replace("+/-", "±"))
    if match is None:
        raise ValueError(f"{text!r} is not a printed number (like '38.30' or '38.88 ±0.54')")
    value, places, spread, spread_places = match.groups()
    return Printed(
        float(value),
        None if spread is None else float(spread),
        len(places or ""),
        None if spread is None else len(spread_places or ""),
    )


class Spread(Strict):
    """What a table's ``±`` is: a standard error or a sample standard deviation over ``n`` runs, or not said."""

    kind: Literal["standard_error", "std", "unstated"]
    n: int | None = Field(None, ge=1, description="Runs behind the spread, where the paper states them.")

    def as_std(self, spread: float) -> float | None:
        """The sample standard deviation behind ``spread`` (None: not usable for an interval)."""
        if self.n is None or self.n < 2 or self.kind == "unstated":
            return None
        return spread * math.sqrt(self.n) if self.kind == "standard_error" else spread

    def describe(self) -> str:
        runs = f" over {self.n} runs" if self.n else ""
        if self.kind == "unstated":
            return "± printed without saying what it is" + (f" ({self.n} runs)" if self.n else "")
        return f"± is a {'standard error' if self.kind == 'standard_error' else 'sample standard deviation'}{runs}"


class PublishedTable(Strict):
    """One table of a paper, as data: its columns (``task.metric`` in mtlab's names and display units, or one of
    :data:`SUMMARY_COLUMNS`), its single-task row, and one row per method in the paper's names, each cell as the
    paper prints it (quoted, so that trailing zeros keep the printed precision; ``""`` where it prints nothing)."""

    source: str = Field(min_length=1, description="Paper and table: 'Navon et al. (Nash-MTL, ICML 2022), Table 2'.")
    protocol: str = Field(min_length=1, description="The protocol the numbers come from (network, schedule, measure).")
    budget: str | None = Field(
        description="This study's budget that follows the protocol; null: none does (the numbers are shown, never "
        "set against this study's runs)."
    )
    secondary: str = Field(
        "", description="Non-empty for a secondary copy (the tables' * rows): who copied the rows, from where."
    )
    spread: Spread | None = Field(None, description="What the table's ± is, where it prints one.")
    columns: list[str] = Field(min_length=1)
    single_task: list[str | float] | None = Field(None, description="The table's single-task (STL) row.")
    rows: dict[str, list[str | float]] = Field(min_length=1, description="Paper's method name -> its cells.")
    errata: dict[str, str] = Field(
        default_factory=dict, description="Method -> why its row is a known error of the table: shown, not compared."
    )
    note: str = Field("", description="What else to know about the table.")

    @model_validator(mode="after")
    def _cells(self) -> PublishedTable:
        for column in self.columns:
            if "." not in column and column not in SUMMARY_COLUMNS:
                raise ValueError(f"column {column!r}: 'task.metric', or one of {sorted(SUMMARY_COLUMNS)}")
        named = {"single_task": self.single_task} if self.single_task is not None else {}
        for method, cells in {**named, **self.rows}.items():
            if len(cells) != len(self.columns):
                raise ValueError(f"row {method!r}: {len(cells)} cells for {len(self.columns)} columns")
            for column, cell in zip(self.columns, cells, strict=True):
                try:
                    parse_printed(cell)
                except ValueError as e:
                    raise ValueError(f"row {method!r}, column {column!r}: {e}") from None
        unknown = [m for m in self.errata if m not in self.rows]
        if unknown:
            raise ValueError(f"errata name methods without a row: {unknown}")
        return self

    def cell(self, method: str, column: str) -> Printed | None:
        """The printed cell of ``method`` (``"single_task"``: the STL row) in ``column``; None where empty."""
        cells = self.single_task if method == "single_task" else self.rows[method]
        if cells is None or column not in self.columns:
            return None
        return parse_printed(cells[self.columns.index(column)])

    @property
    def metric_columns(self) -> list[tuple[str, str]]:
        """(task, metric) of every column that is one task's metric, in table order."""
        return [tuple(c.split(".", 1)) for c in self.columns if "." in c]  # type: ignore[misc]


class Published(Strict):
    """The papers' tables for this study: how their method names map to this study's variants, and the tables."""

    methods: dict[str, str | None] = Field(
        min_length=1,
        description="Paper's method name -> this study's variant that runs it (null: none does, e.g. an architecture "
        "or a method mtlab has no module for).",
    )
    method_notes: dict[str, str] = Field(
        default_factory=dict, description="Paper's method name -> what the mapping means (e.g. 'IMTL = IMTL-G here')."
    )
    tables: list[PublishedTable] = Field(min_length=1)

    @model_validator(mode="after")
    def _mapped(self) -> Published:
        for table in self.tables:
            unmapped = [m for m in table.rows if m not in self.methods]
            if unmapped:
                raise ValueError(f"{table.source}: methods {unmapped} are not in 'methods' (map each to a variant, "
                                 "or to null)")  # fmt: skip
        return self


Reference.model_rebuild()  # its ``published`` field is defined above it


def incomparable_reasons(reference: Reference, budget: str | None, overrides: Mapping[str, object] | None) -> list[str]:
    """Why a study run at ``budget`` with command-line ``overrides`` cannot be set against the original, each
    reason completing "this study ..." (empty when it can): another budget than the original protocol's, or an
    override of anything but :data:`EXECUTION_KEYS`."""
    reasons = []
    if reference.budget is not None and budget != reference.budget:
        ran = budget or "default"
        reasons.append(f"ran budget '{ran}', not the original protocol's budget '{reference.budget}'")
    changed = [key for key in overrides or {} if not any(key == k or key.startswith(f"{k}.") for k in EXECUTION_KEYS)]
    if changed:
        reasons.append(f"has overrides that change the protocol ({', '.join(changed)})")
    return reasons


def check_reference(spec: StudySpec, runs: Iterable[RunSpec]) -> None:
    """Raise :class:`ConfigError` naming the key of the first reference entry that names an unknown budget,
    variant, task or metric (tasks per variant as its expanded runs train them; metrics as the task's type
    reports them)."""
    from mtlab.tasks import TASK_TYPES

    reference = spec.reference
    if reference is None:
        return
    where = f"study {spec.name}: reference"
    tasks: dict[str, list[str]] = {}
    types: dict[str, dict[str, str]] = {}
    for run in runs:
        tasks.setdefault(run.variant, run.config.task_names)
        types.setdefault(run.variant, run.config.task_type_names())
    if reference.budget is not None and reference.budget not in spec.budgets:
        raise ConfigError(f"{where}.budget: unknown budget {reference.budget!r}; budgets: {list(spec.budgets)}")

    def known(key: str, variant: str, task: str) -> None:
        if variant not in tasks:
            raise ConfigError(f"{where}.{key}: unknown variant {variant!r}; the study's variants are {list(tasks)}")
        if task not in tasks[variant]:
            raise ConfigError(f"{where}.{key}: unknown task {task!r}; {variant!r} trains {tasks[variant]}")

    def reported(key: str, variant: str, task: str, metric: str | None) -> None:
        kind = TASK_TYPES.get(types[variant][task])
        if metric is not None and metric not in kind.metric_names():
            raise ConfigError(
                f"{where}.{key}: unknown metric {metric!r}; {task} is a {kind.name} task, which reports "
                f"{kind.metric_names()}"
            )

    for variant, per_task in reference.values.items():
        if variant not in tasks:
            raise ConfigError(f"{where}.values.{variant!r}: unknown variant; the study's variants are {list(tasks)}")
        for task, per_metric in per_task.items():
            known(f"values.{variant!r}.{task}", variant, task)
            for metric in per_metric:
                reported(f"values.{variant!r}.{task}.{metric}", variant, task, metric)
    if reference.baselines is not None:
        trained = {task for names in tasks.values() for task in names}
        for task, per_metric in reference.baselines.values.items():
            owner = next((v for v, names in tasks.items() if task in names), None)
            if owner is None:
                raise ConfigError(f"{where}.baselines.values.{task}: unknown task; the study trains {sorted(trained)}")
            for metric in per_metric:
                reported(f"baselines.values.{task}.{metric}", owner, task, metric)
    for task, variant in reference.single_task.items():
        known(f"single_task.{task}", variant, task)
    for variant in reference.delta_m:
        if variant not in tasks:
            raise ConfigError(f"{where}.delta_m.{variant!r}: unknown variant; the study's variants are {list(tasks)}")
    if reference.published is not None:
        published = reference.published
        for method, variant in published.methods.items():
            if variant is not None and variant not in tasks:
                raise ConfigError(
                    f"{where}.published.methods.{method!r}: unknown variant {variant!r}; the study's variants are "
                    f"{list(tasks)}"
                )
        for i, table in enumerate(published.tables):
            key = f"published.tables[{i}]"
            if table.budget is not None and table.budget not in spec.budgets:
                budgets = list(spec.budgets)
                raise ConfigError(f"{where}.{key}.budget: unknown budget {table.budget!r}; budgets: {budgets}")
            for task, metric in table.metric_columns:
                owner = next((v for v, names in tasks.items() if task in names), None)
                if owner is None:
                    raise ConfigError(f"{where}.{key}.columns: unknown task {task!r} in '{task}.{metric}'")
                reported(f"{key}.columns", owner, task, metric)
    for i, claim in enumerate(reference.claims):
        for j, c in enumerate(claim.compare):
            known(f"claims[{i}].compare[{j}].variant", c.variant, c.task)
            known(f"claims[{i}].compare[{j}].vs", c.vs, c.task)
            reported(f"claims[{i}].compare[{j}].metric", c.variant, c.task, c.metric)
