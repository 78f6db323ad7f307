"""The report section "The papers' tables": the published numbers of each method beside this study's, with verdicts.

A study's ``reference.published`` (:class:`~mtlab.study.reference.Published`) holds the papers' tables as they print
them, each under its protocol and the budget of this study that follows it. For every table this section gives:

- **Its own consistency**: each printed Δm recomputed from the table's own rows (:func:`recomputed_delta_m`) - the
  mean over the table's metrics of the relative change against the table's single-task row, in the papers' sign
  (``(-1)^{h_k} (M_k - B_k) / B_k``, h_k = 1 when higher is better: lower Δm is better) - and flagged when the
  printed number lies beyond what rounding the row's printed digits can explain. This needs no run of the study.
- **Verdicts**, when the study ran at the table's budget without overrides that change the protocol
  (:func:`mtlab.study.reference.incomparable_reasons`): per method and metric, the paper's value beside this study's
  mean over seeds with its 95% interval, and a verdict on the difference (this study minus the paper) from
  :func:`mtlab.report.reference.agreement`: ``within`` when the difference's 95% interval holds 0, else ``above`` or
  ``below``; the interval is Welch's where the paper's ± is a standard error or standard deviation over stated runs
  (a standard error s over n runs is a standard deviation s * sqrt(n)), and this study's own Student-t interval
  otherwise (the paper's number taken as exact). The printed Δm gets the same verdict against this study's Δm over
  the same metrics and the same (the paper's) single-task row, in the paper's sign; the section also gives both in
  mtlab's sign (higher is better, the negation). ``avg_error`` (100 minus the mean accuracy over every task, percent)
  is compared like a metric; mean ranks (``mr``) and LibMTL's Δp are shown, never compared.

Rows of a secondary copy (the tables' ``*`` sources) are marked as such; a row listed in the table's ``errata`` is
shown with its reason and never compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import ValidationError

from mtlab.pages.blocks import Block, Bullets, Cell, Heading, Table, Text
from mtlab.report.reference import _per_seed, _type_direction, agreement, delta_m_per_seed, study_reference
from mtlab.report.tables import MISSING, StudyData
from mtlab.study.reference import (
    SUMMARY_COLUMNS,
    OriginalValue,
    Printed,
    PublishedTable,
    Reference,
    incomparable_reasons,
)
from mtlab.tasks import TASK_TYPES

TITLE = "The papers' tables"
VERDICT_RULE = (
    "Verdict: this study minus the paper; 'within' when the 95% interval of that difference holds 0, 'above' / "
    "'below' when this study is above / below the paper beyond it. The interval is Welch's where the paper's ± is a "
    "standard error or standard deviation over a stated number of runs (a standard error s over n runs counts as a "
    "standard deviation s·√n), otherwise this study's own Student-t interval (the paper's number taken as exact); "
    "'too few runs' below two seeds. A higher value is not a better one for every metric: depth errors and normal "
    "angles are better lower."
)

Higher = Callable[[str, str], bool]
"""Whether higher is better for (task, metric)."""


# ---------------------------------------------------------------------------------------------- Δm from rows


@dataclass(frozen=True)
class RecomputedDeltaM:
    """A printed Δm beside the Δm its own row gives (both in the paper's sign: lower is better)."""

    printed: float
    recomputed: float
    bound: float
    """How far rounding the printed row, single-task row and Δm to their digits can move the difference (first
    order): half a unit of each printed last digit, propagated through the relative changes."""

    @property
    def consistent(self) -> bool:
        return abs(self.printed - self.recomputed) <= self.bound + 1e-9


def row_delta_m(
    table: PublishedTable, method: str, higher: Higher, cells: Mapping[tuple[str, str], float] | None = None
) -> tuple[float, float] | None:
    """Δm (percent, the paper's sign: lower is better) of ``method``'s row - or of ``cells`` (task, metric) ->
    value, e.g. this study's means - against the table's single-task row over the table's metric columns, with its
    first-order rounding bound; None when the table has no single-task row or a cell is empty."""
    terms, bound = [], 0.0
    for task, metric in table.metric_columns:
        base = table.cell("single_task", f"{task}.{metric}")
        if base is None or base.value == 0:
            return None
        if cells is None:
            printed = table.cell(method, f"{task}.{metric}")
            if printed is None:
                return None
            value, half = printed.value, printed.half_unit
        else:
            value, half = cells[(task, metric)], 0.0
        sign = -1.0 if higher(task, metric) else 1.0
        terms.append(sign * (value - base.value) / base.value * 100.0)
        bound += 100.0 * (half / abs(base.value) + abs(value) * base.half_unit / base.value**2)
    if not terms:
        return None
    return float(np.mean(terms)), bound / len(terms)


def recomputed_delta_m(table: PublishedTable, method: str, higher: Higher) -> RecomputedDeltaM | None:
    """The printed Δm of ``method`` and the one its own row gives (:func:`row_delta_m`); None when the table prints
    no Δm for it or its row cannot give one."""
    printed = table.cell(method, "delta_m")
    found = row_delta_m(table, method, higher)
    if printed is None or found is None:
        return None
    value, bound = found
    return RecomputedDeltaM(printed.value, value, bound + printed.half_unit)


def type_higher(types: Mapping[str, str]) -> Higher:
    """``higher`` from each task's type (task -> type name), as :mod:`mtlab.tasks` defines the metrics' directions."""
    return lambda task, metric: _type_direction(types[task], metric) == "max"


def study_higher(study: StudyData) -> Higher:
    """``higher`` from the study's recorded tasks; for a task no finished run has recorded the metric of, from the
    task types that report a metric of that name (the tables' checks need no run)."""

    def higher(task: str, metric: str) -> bool:
        recorded = study.task(task).directions.get(metric)
        return (recorded or metric_direction(metric)) in ("max", True)

    return higher


def metric_direction(metric: str) -> str:
    """``max`` or ``min`` for ``metric`` as the registered task types that report it agree on; ValueError if none
    reports it or they disagree."""
    types = [TASK_TYPES.get(name) for name in TASK_TYPES.names()]
    found = {kind.direction(metric) for kind in types if metric in kind.metric_names()}
    if len(found) != 1:
        raise ValueError(f"no one direction for the metric {metric!r} among the task types: {sorted(found)}")
    return found.pop()


# ------------------------------------------------------------------------------------------ numeric frames


def original_of(table: PublishedTable, printed: Printed) -> OriginalValue:
    """A printed cell as the original value the verdict compares with (its spread as a std where usable)."""
    spread = table.spread
    std = spread.as_std(printed.spread) if spread is not None and printed.spread is not None else None
    return OriginalValue(mean=printed.value, std=std, n=spread.n if std is not None else None)


def _avg_error(study: StudyData, variant: str) -> pd.Series:
    """100 minus the mean test accuracy (percent) over every task of ``variant``, per seed that recorded all."""
    m = study.metrics
    rows = m[(m["split"] == "test") & (m["metric"] == "acc") & (m["variant"] == variant) & (m["task"] != "")]
    per_seed = rows.pivot_table(index="seed", columns="task", values="value", aggfunc="first").dropna()
    return 100.0 - per_seed.mean(axis=1) * 100.0


def _ours_delta_m(study: StudyData, table: PublishedTable, variant: str) -> pd.Series:
    """This study's Δm per seed against the table's single-task row, in the paper's sign (lower is better)."""
    baseline: dict[str, dict[str, float]] = {}
    for task, metric in table.metric_columns:
        base = table.cell("single_task", f"{task}.{metric}")
        if base is None:
            return pd.Series(dtype=float)
        baseline.setdefault(task, {})[metric] = base.value
    return -delta_m_per_seed(study, variant, baseline) if baseline else pd.Series(dtype=float)


def values_frame(study: StudyData, table: PublishedTable, methods: Mapping[str, str | None]) -> pd.DataFrame:
    """One row per (method with a variant, compared column): the paper's printed cell and this study's
    :class:`~mtlab.report.reference.Agreement` with it. Compared columns: each task metric, ``avg_error`` and
    ``delta_m`` (this study's Δm against the table's single-task row, the paper's sign)."""
    rows = []
    for method in table.rows:
        variant = methods.get(method)
        if variant is None or method in table.errata:
            continue
        for column in table.columns:
            printed = table.cell(method, column)
            if printed is None or column in ("mr", "delta_p"):
                continue
            if column == "delta_m":
                ours = _ours_delta_m(study, table, variant)
            elif column == "avg_error":
                ours = _avg_error(study, variant)
            else:
                task, metric = column.split(".", 1)
                ours = _per_seed(study, variant, task, metric)
            if column == "delta_m" and ours.empty:
                continue  # no single-task row to compute this study's Δm against
            a = agreement(ours.to_numpy(), original_of(table, printed))
            rows.append({"method": method, "variant": variant, "column": column, "printed": printed, **a.__dict__})
    return pd.DataFrame(rows)


def delta_m_check_frame(table: PublishedTable, higher: Higher) -> pd.DataFrame:
    """One row per method with a printed Δm that its row lets recompute: printed, recomputed, bound, consistent."""
    rows = []
    for method in table.rows:
        found = recomputed_delta_m(table, method, higher)
        if found is not None:
            rows.append({"method": method, **found.__dict__, "consistent": found.consistent})
    return pd.DataFrame(rows, columns=["method", "printed", "recomputed", "bound", "consistent"])


# -------------------------------------------------------------------------------------------------- blocks


def published_blocks(study: StudyData) -> list[Block]:
    """The section's blocks; none when the study's reference has no published tables."""
    try:
        reference = study_reference(study)
    except ValidationError:
        return []  # "Against the original study" says the stored reference no longer validates
    if reference is None or reference.published is None:
        return []
    published = reference.published
    higher = study_higher(study)
    blocks: list[Block] = [Heading(TITLE)]
    blocks.append(
        Text(
            "The numbers the papers print, table by table, each under its own protocol: a table is set against this "
            "study only when the study ran at the budget that follows that protocol. Δm as the papers print it: the "
            "mean over the table's metrics of the relative change against the table's single-task row, in percent, "
            "lower is better (mtlab's Δm elsewhere in this report is the negation: higher is better). "
            "Every printed Δm is recomputed from its own row; a row that does not give its printed Δm (beyond what "
            "rounding the printed digits explains) is flagged. " + VERDICT_RULE
        )
    )
    flagged = []
    for table in published.tables:
        check = delta_m_check_frame(table, higher)
        for r in check[~check["consistent"]].to_dict("records"):
            flagged.append(f"{table.source}, {r['method']}: printed Δm {r['printed']:+.2f}, its row gives "
                           f"{r['recomputed']:+.2f} (rounding explains ±{r['bound']:.2f})")  # fmt: skip
    if flagged:
        blocks += [Text("Printed Δm that its own row does not give:"), Bullets(flagged)]
    mapped = [f"{m} = {v}" + (f" ({published.method_notes[m]})" if m in published.method_notes else "")
              for m, v in published.methods.items() if v is not None]  # fmt: skip
    unmapped = [m for m, v in published.methods.items() if v is None]
    blocks.append(Text("The papers' method names as this study's variants: " + "; ".join(mapped) + "."
                       + (f" No variant of this study runs {', '.join(unmapped)}." if unmapped else "")))  # fmt: skip
    for table in published.tables:
        blocks += _table_blocks(study, reference, table, published.methods, higher)
    return blocks


def _table_blocks(
    study: StudyData, reference: Reference, table: PublishedTable, methods: Mapping[str, str | None], higher: Higher
) -> list[Block]:
    title = table.source + (" (secondary copy)" if table.secondary else "")
    blocks: list[Block] = [Heading(title, 3)]
    facts = [f"Protocol: {table.protocol}."]
    if table.secondary:
        facts.append(f"Secondary copy: {table.secondary}.")
    if table.spread is not None:
        facts.append(f"Spread: {table.spread.describe()}.")
    if table.note:
        facts.append(f"Note: {table.note}.")
    facts += [f"Known error, not compared: {m} - {why}" for m, why in table.errata.items()]
    reasons = _reasons(study, reference, table)
    if reasons:
        facts.append(f"Not set against this study's runs: {' and '.join(reasons)}.")
    blocks.append(Bullets(facts))
    check = delta_m_check_frame(table, higher)
    values = pd.DataFrame() if reasons else values_frame(study, table, methods)
    if not values.empty and (values["column"] != "delta_m").any():
        blocks.append(_values_table(table, values))
    elif _prints_metrics(table):
        blocks.append(_printed_table(table, methods))
    if "delta_m" in table.columns:
        blocks.append(_delta_m_table(table, check, values, methods))
    return blocks


def _prints_metrics(table: PublishedTable) -> bool:
    """Whether a method's row prints a value besides Δm and MR (QM9's text copy prints only those two)."""
    columns = [c for c in table.columns if c not in ("delta_m", "mr")]
    return any(table.cell(m, c) is not None for m in table.rows for c in columns)


def _printed_table(table: PublishedTable, methods: Mapping[str, str | None]) -> Table:
    """The table's own numbers (all but Δm and MR, which the Δm table gives), when none is set against this study."""
    columns = [c for c in table.columns if c not in ("delta_m", "mr")]
    named = ([("single-task", "single_task")] if table.single_task is not None else []) + [(m, m) for m in table.rows]
    rows = []
    for label, method in named:
        star = " *" if table.secondary and method != "single_task" else ""
        row = [Cell(label + star, kind="text"), Cell(methods.get(method) or MISSING, kind="code")]
        for column in columns:
            p = table.cell(method, column)
            row.append(Cell(_printed(table, p, signed=column == "delta_p") if p else MISSING))
        rows.append(row)
    caption = f"{table.source}, as printed" + (" (* a secondary copy's row)." if table.secondary else ".")
    return Table(["Method", "Variant", *[_column_label(c) for c in columns]], rows, caption)


def _reasons(study: StudyData, reference: Reference, table: PublishedTable) -> list[str]:
    if table.budget is None:
        return ["no budget of this study follows this protocol"]
    ran = reference.model_copy(update={"budget": table.budget})
    return [f"this study {r}" for r in incomparable_reasons(ran, study.info.get("budget"), study.info.get("overrides"))]


def _column_label(column: str) -> str:
    if column in SUMMARY_COLUMNS:
        return {"delta_m": "Δm (%)", "avg_error": "average error (%)", "delta_p": "Δp (%, higher is better)"}.get(
            column, column
        )
    task, metric = column.split(".", 1)
    return f"{task} {metric}"


def _printed(table: PublishedTable, p: Printed, signed: bool = False) -> str:
    spread = f" ± {p.spread:.{p.spread_decimals}f}" if p.spread is not None else ""
    return f"{p.value:{'+' if signed else ''}.{p.decimals}f}{spread}"


def _values_table(table: PublishedTable, values: pd.DataFrame) -> Table:
    rows = []
    metrics = values[values["column"] != "delta_m"]
    for r in metrics.to_dict("records"):
        p: Printed = r["printed"]
        digits = f".{max(p.decimals, 2)}f"
        rows.append(
            [
                Cell(r["method"] + (" *" if table.secondary else ""), kind="text"),
                Cell(r["variant"], kind="code"),
                Cell(_column_label(r["column"]), kind="text"),
                Cell(_printed(table, p)),
                Cell(_fmt(r["mean"], digits), note=f"n={r['n']}"),
                Cell(f"[{r['ci_low']:{digits}}, {r['ci_high']:{digits}}]" if _ok(r["ci_low"]) else MISSING),
                Cell(_fmt(r["difference"], "+" + digits)),
                Cell(r["verdict"], strong=r["verdict"] in ("above", "below"), kind="text"),
            ]
        )
    star = " * marks a secondary copy's row." if table.secondary else ""
    caption = (
        f"{table.source}: the paper's value beside this study's mean over seeds with its 95% Student-t interval; "
        f"difference = this study minus the paper; verdict by the rule at the top of this section.{star}"
    )
    headers = ["Method", "Variant", "Metric", "Paper", "This study", "95% CI", "Difference", "Verdict"]
    return Table(headers, rows, caption)


def _delta_m_table(
    table: PublishedTable, check: pd.DataFrame, values: pd.DataFrame, methods: Mapping[str, str | None]
) -> Table:
    recomputed = check.set_index("method") if not check.empty else pd.DataFrame()
    ours = values[values["column"] == "delta_m"].set_index("method") if not values.empty else pd.DataFrame()
    rows = []
    for method in table.rows:
        printed = table.cell(method, "delta_m")
        if printed is None:
            continue
        mr = table.cell(method, "mr")
        rank = f"MR {mr.value:.{mr.decimals}f}" if mr is not None else ""
        name = method + (" *" if table.secondary else "")
        row = [Cell(name, kind="text"), Cell(methods.get(method) or MISSING, kind="code"),
               Cell(_printed(table, printed, signed=True), note=rank)]  # fmt: skip
        if method in recomputed.index:
            c = recomputed.loc[method]
            flag = "consistent" if c["consistent"] else "differs"
            row += [Cell(f"{c['recomputed']:+.2f}", note=f"±{c['bound']:.2f}"),
                    Cell(flag, strong=not c["consistent"], kind="text")]  # fmt: skip
        else:
            row += [Cell(MISSING), Cell(MISSING)]
        if method in table.errata:
            row += [Cell(MISSING), Cell(MISSING), Cell("known error", kind="text"),
                    Cell(f"{-printed.value:+.{printed.decimals}f}"), Cell(MISSING)]  # fmt: skip
        elif method in ours.index:
            o = ours.loc[method]
            interval = f"[{o['ci_low']:+.2f}, {o['ci_high']:+.2f}]" if _ok(o["ci_low"]) else MISSING
            row += [Cell(_fmt(o["mean"], "+.2f"), note=f"n={o['n']}"), Cell(interval),
                    Cell(o["verdict"], strong=o["verdict"] in ("above", "below"), kind="text"),
                    Cell(f"{-printed.value:+.{printed.decimals}f}"), Cell(_fmt(-o["mean"], "+.2f"))]  # fmt: skip
        else:
            row += [Cell(MISSING), Cell(MISSING), Cell(MISSING, kind="text"),
                    Cell(f"{-printed.value:+.{printed.decimals}f}"), Cell(MISSING)]  # fmt: skip
        rows.append(row)
    headers = ["Method", "Variant", "Printed Δm", "Its row gives", "Check", "This study's Δm", "95% CI", "Verdict",
               "Printed, mtlab's sign", "This study, mtlab's sign"]  # fmt: skip
    caption = (
        f"{table.source}: Δm in percent in the paper's sign (lower is better) unless marked mtlab's sign (higher is "
        "better: the negation). 'Its row gives': Δm recomputed from the method's printed metrics and the table's "
        "single-task row (± what rounding the printed digits can explain, to first order); 'differs' when the printed "
        "Δm lies beyond that. This study's Δm: over the same metrics against the same (the paper's) single-task row, "
        "mean over seeds with its 95% interval, and its verdict against the printed Δm (the rule at the top of this "
        "section). MR (the paper's mean rank) is shown, never compared: it depends on which methods a paper ranks. "
        "A known error of the table is shown, not compared."
    )
    return Table(headers, rows, caption)


def _ok(x: object) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _fmt(x: float, spec: str) -> str:
    return format(x, spec) if _ok(x) else MISSING
