"""The report section "Two selections": mtlab's choice of weights beside a paper's choice by the test split.

mtlab selects a run's weights on a validation split carved from the training images (``train.early_stopping``
restores the best validation epoch) and evaluates the test split once, on those weights. Some papers instead keep
the epoch with the best **test** metric (Sener & Koltun, NeurIPS 2018, for MultiMNIST: "we choose the model with the
highest validation accuracy", where their validation loader is the MNIST test split - their repository's issue 14).
A run with ``train.test_history`` records the test metrics after every epoch, so both selections can be read from
the same runs:

* **validation-selected** (mtlab's): the run's test metrics;
* **test-selected** (the paper's): per run, the epoch whose test metrics are best - the mean over the run's tasks of
  each task's primary metric, signed by its direction (the earliest such epoch on a tie) - and every task's test value
  at that epoch. Choosing on the split that is reported is optimistic by construction: the difference between the
  two is what it adds.

With a study ``reference`` (:mod:`mtlab.study.reference`) that this run is comparable with, each selection's values
get the verdicts of :func:`mtlab.report.reference.agreement` against the original's numbers, side by side.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pydantic import ValidationError

from mtlab.pages.blocks import Block, Cell, Heading, Table, Text
from mtlab.report.reference import agreement, study_reference
from mtlab.report.tables import MISSING, StudyData
from mtlab.report.units import scale
from mtlab.study.reference import incomparable_reasons

TITLE = "Two selections: by validation (mtlab) and by test (the paper's)"
TEST = "test."


def selected_by_test(history: pd.DataFrame, primaries: dict[str, tuple[str, float]]) -> tuple[int, dict[str, float]]:
    """The epoch of one run's per-epoch test records ``history`` (columns epoch, metric, value; metrics
    ``test.<task>.<metric>``) whose mean over tasks of ``sign * value`` of the task's primary metric is largest
    (``primaries``: task -> (metric, +1 when higher is better, else -1)), the earliest on a tie; and each task's
    primary test value at that epoch. Tasks without test records are left out (none: epoch 0, no values)."""
    table = history.pivot_table(index="epoch", columns="metric", values="value", aggfunc="first").sort_index()
    columns = {task: f"{TEST}{task}.{metric}" for task, (metric, _) in primaries.items()}
    present = {task: column for task, column in columns.items() if column in table.columns}
    if not present:
        return 0, {}
    score = sum(primaries[task][1] * table[column] for task, column in present.items()) / len(present)
    epoch = int(score.idxmax())  # the first maximum
    return epoch, {task: float(table.at[epoch, column]) for task, column in present.items()}


def selection_frame(study: StudyData) -> pd.DataFrame:
    """One row per finished run with per-epoch test records and task: variant, seed, task, metric, the
    validation-selected test value, the test-selected one (both in display units) and the test-selected epoch."""
    history = study.history[study.history["metric"].str.startswith(TEST)]
    test = study.metrics[study.metrics["split"] == "test"]
    rows = []
    for run_id, records in history.groupby("run_id", sort=False):
        tasks = sorted({m.split(".")[1] for m in records["metric"] if m.count(".") == 2})
        primaries = {}
        for task in tasks:
            info = study.task(task)
            primaries[task] = (info.primary, 1.0 if info.directions.get(info.primary, "max") in ("max", True) else -1.0)
        if not primaries:
            continue
        epoch, values = selected_by_test(records, primaries)
        first = records.iloc[0]
        for task, value in values.items():
            metric = primaries[task][0]
            mine = test[(test["run_id"] == run_id) & (test["task"] == task) & (test["metric"] == metric)]["value"]
            rows.append(
                {
                    "variant": first["variant"],
                    "seed": int(first["seed"]),
                    "task": task,
                    "metric": metric,
                    "validation": float(mine.iloc[0]) * scale(metric) if len(mine) else math.nan,
                    "test_selected": value * scale(metric),
                    "epoch": epoch,
                }
            )
    frame = pd.DataFrame(rows, columns=["variant", "seed", "task", "metric", "validation", "test_selected", "epoch"])
    order = {v: i for i, v in enumerate(study.variants)}
    return frame.sort_values(["variant", "task", "seed"], key=lambda c: c.map(order) if c.name == "variant" else c)


def _mean_std(values: np.ndarray) -> str:
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return MISSING
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def selection_blocks(study: StudyData) -> list[Block]:
    """The section, when some finished run recorded its test metrics every epoch (``train.test_history``)."""
    frame = selection_frame(study)
    if frame.empty:
        return []
    blocks: list[Block] = [
        Heading(TITLE),
        Text(
            "By validation (mtlab's selection): the weights of the best epoch on the validation split carved from the "
            "training images, the test split evaluated once. By test (the paper's selection, on the test split): "
            "the epoch with the best test value (the mean of the run's tasks' primary metrics), read from the test "
            "evaluations after every epoch (train.test_history). Selecting on the reported split is optimistic: "
            "the difference is what it adds."
        ),
    ]
    rows = []
    for (variant, task), group in frame.groupby(["variant", "task"], sort=False):
        difference = (group["test_selected"] - group["validation"]).to_numpy()
        rows.append(
            [
                Cell(variant, kind="text"),
                Cell(f"{task} {group['metric'].iloc[0]}", kind="text"),
                Cell(_mean_std(group["validation"].to_numpy()), note=f"n={len(group)}"),
                Cell(_mean_std(group["test_selected"].to_numpy()), note=f"n={len(group)}"),
                Cell(_mean_std(difference)),
                Cell(f"{group['epoch'].mean():.1f}"),
            ]
        )
    headers = ["Variant", "Task", "By validation (mtlab)", "By test (the paper's)", "Test minus validation",
               "Test-selected epoch (mean)"]  # fmt: skip
    caption = "Test values in percent for fraction metrics, mean ± sample std over seeds."
    blocks.append(Table(headers, rows, caption=caption))
    gains = (frame["test_selected"] - frame["validation"]).dropna()
    if len(gains):
        blocks.append(Text(f"Over every run and task, selecting on the test split adds {gains.mean():+.2f} on average "
                           f"(from {gains.min():+.2f} to {gains.max():+.2f}; percentage points for fraction "
                           "metrics)."))  # fmt: skip
    blocks += _verdict_blocks(study, frame)
    return blocks


def _verdict_blocks(study: StudyData, frame: pd.DataFrame) -> list[Block]:
    """Both selections against the study reference's values, when the run is comparable with it."""
    try:
        reference = study_reference(study)
    except ValidationError:
        return []  # the reference section says so
    if reference is None or not reference.values:
        return []
    if incomparable_reasons(reference, study.info.get("budget"), study.info.get("overrides")):
        return [Text("No verdicts per selection: this study is not comparable with its reference (see "
                     "'Against the original study').", muted=True)]  # fmt: skip
    rows = []
    for variant, per_task in reference.values.items():
        for task, per_metric in per_task.items():
            for metric, original in per_metric.items():
                group = frame[(frame["variant"] == variant) & (frame["task"] == task) & (frame["metric"] == metric)]
                if group.empty:
                    continue
                cells = [Cell(variant, kind="text"), Cell(f"{task} {metric}", kind="text")]
                cells.append(Cell(f"{original.mean:.2f}"))
                for column in ("validation", "test_selected"):
                    a = agreement(group[column].dropna().to_numpy(), original)
                    cells.append(Cell(f"{a.mean:.2f}" if not math.isnan(a.mean) else MISSING, note=f"n={a.n}"))
                    cells.append(Cell(a.verdict, strong=a.verdict in ("above", "below"), kind="text"))
                rows.append(cells)
    if not rows:
        return []
    headers = ["Variant", "Task", "Original", "By validation", "Verdict", "By test (the paper's)", "Verdict"]
    caption = (f"Each selection against {reference.source}. Verdict: 'within' when the 95% interval of this study's "
               "mean minus the original holds 0, else 'above' / 'below' (the rule of 'Against the original study').")
    return [Heading("Each selection against the original", 3), Table(headers, rows, caption=caption)]
