"""The report's tables: what a study found, as numeric frames first and as display cells second.

Everything here reads one :class:`StudyData` snapshot of the results store (never printed text, never run
directories), and every statistic comes from :mod:`mtlab.analysis.stats`; this module only arranges and formats
them. The numeric frames are what a script wants; :class:`Table` is what a reader wants (accuracy in percent,
p-values as numbers, '–' wherever a value does not exist yet, e.g. the interval of a variant with one seed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mtlab.analysis.stats import ALPHA, compare, delta_m, rank_variants, summarize
from mtlab.config.schema import RunConfig
from mtlab.errors import MtlabError
from mtlab.study.controls import resolve_controls
from mtlab.study.spec import RunSpec, StudySpec
from mtlab.study.store import ResultStore

STORE_NAME = "results.sqlite"  # the same name as mtlab.study.runner.STORE_NAME, without importing the trainer (torch)
MISSING = "–"


# ------------------------------------------------------------------------------------------------------ loading


@dataclass
class StudyData:
    """One read of a study's store: everything the report is made from.

    ``runs`` holds the runs of the current spec (every status) in study order; ``metrics`` and ``history`` only
    the finished ones. ``notes`` collects what could not be worked out (e.g. controls of a spec that no longer
    validates), so the report can say so instead of failing.
    """

    directory: Path
    info: dict[str, Any]
    runs: pd.DataFrame
    metrics: pd.DataFrame
    history: pd.DataFrame
    controls: dict[str, dict[str, str]]
    variants: list[str]
    tasks: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def control_variants(self) -> list[str]:
        """Variants some other variant is compared with, in study order."""
        used = {c for per_task in self.controls.values() for c in per_task.values()}
        return [v for v in self.variants if v in used]

    def confusion(self, run_id: str) -> dict[str, list[list[int]]]:
        """A run's test confusion matrices per task, read when asked: a report shows a few of possibly hundreds."""
        with ResultStore(store_path(self.directory)) as store:
            return store.confusion(run_id)

    def status_counts(self) -> dict[str, int]:
        counts = self.runs["status"].value_counts()
        return {s: int(counts.get(s, 0)) for s in ("done", "failed", "pending", "running")}


def store_path(directory: Path) -> Path:
    """The study's store, or a user error naming the directory (opening a missing store would create an empty one)."""
    path = Path(directory) / STORE_NAME
    if not path.is_file():
        raise MtlabError(f"{directory}: not a study directory (no {STORE_NAME} in it)")
    return path


def load_study(directory: Path) -> StudyData:
    """Read the study at ``directory`` (a user error if it has no store); only the runs of the current spec."""
    directory = Path(directory)
    with ResultStore(store_path(directory)) as store, store.snapshot():  # one moment, even while a driver writes
        info = store.info()
        runs = store.runs_frame()
        metrics = store.metrics_frame()
        history = store.history_frame()
    notes: list[str] = []
    controls, configured_tasks = _controls_and_tasks(info, runs, notes)
    variants = list(dict.fromkeys(runs["variant"]))
    measured = [t for t in dict.fromkeys(metrics.loc[metrics["split"] == "test", "task"]) if t]
    tasks = list(dict.fromkeys([*configured_tasks, *measured]))
    return StudyData(directory, info, runs, metrics, history, controls, variants, tasks, notes)


def _controls_and_tasks(info: dict[str, Any], runs: pd.DataFrame, notes: list[str]):
    """Controls per variant from the stored spec and run configs (no re-expansion: the store is the truth).

    A spec or config written by an older mtlab may not validate any more; the report then goes on without
    controls (pydantic's ValidationError is a ValueError) and says why.
    """
    try:
        run_specs = [
            RunSpec(r.run_id, r.variant, r.labels, int(r.seed), RunConfig.model_validate(json.loads(r.config)))
            for r in runs.itertuples()
        ]
    except (ValueError, MtlabError) as e:
        notes.append(f"stored run configs no longer validate, tasks and controls taken from results only: {e}")
        return {}, []
    tasks = list(dict.fromkeys(t for r in run_specs for t in r.config.task_names))
    if "spec" not in info:
        notes.append("the store holds no study spec; variants are not compared with a control")
        return {}, tasks
    try:
        return resolve_controls(StudySpec.model_validate(info["spec"]), run_specs), tasks
    except (ValueError, MtlabError) as e:
        notes.append(f"controls could not be resolved from the stored spec: {e}")
        return {}, tasks


# --------------------------------------------------------------------------------------------- numeric frames


def summary_frame(study: StudyData) -> pd.DataFrame:
    """One row per variant: run counts, per task test accuracy (n, mean, std, 95% CI) and loss, delta_m, size, time.

    Accuracies are fractions here (as stored); a variant with no finished run has NaN statistics.
    """
    acc = summarize(study.metrics, "test", "acc").set_index(["variant", "task"])
    loss = summarize(study.metrics, "test", "loss").set_index(["variant", "task"])
    dm = delta_m(study.metrics, study.controls).set_index("variant")
    step = step_seconds(study)
    controls = set(study.control_variants)
    columns = ["variant", "runs", "done", "failed", "is_control", "delta_m", "delta_m.ci_low", "delta_m.ci_high",
               "parameters", "seconds", "step_seconds"]
    for task in study.tasks:
        columns += [f"{task}.acc.{s}" for s in ("n", "mean", "std", "ci_low", "ci_high")]
        columns += [f"{task}.loss.{s}" for s in ("mean", "std")]
    rows = []
    for variant in study.variants:
        mine = study.runs[study.runs["variant"] == variant]
        done = mine[mine["status"] == "done"]
        row: dict[str, Any] = {
            "variant": variant,
            "runs": len(mine),
            "done": len(done),
            "failed": int((mine["status"] == "failed").sum()),
            "is_control": variant in controls,
            "delta_m": float(dm["delta_m"].get(variant, math.nan)),
            "delta_m.ci_low": float(dm["ci_low"].get(variant, math.nan)),
            "delta_m.ci_high": float(dm["ci_high"].get(variant, math.nan)),
            "parameters": float(done["parameters"].median()) if len(done) else math.nan,
            "seconds": float(done["seconds"].mean()) if len(done) else math.nan,
            "step_seconds": float(step.get(variant, math.nan)),
        }
        for task in study.tasks:
            a = acc.loc[(variant, task)] if (variant, task) in acc.index else None
            b = loss.loc[(variant, task)] if (variant, task) in loss.index else None
            row[f"{task}.acc.n"] = int(a["n"]) if a is not None else 0
            for stat in ("mean", "std", "ci_low", "ci_high"):
                row[f"{task}.acc.{stat}"] = float(a[stat]) if a is not None else math.nan
            for stat in ("mean", "std"):
                row[f"{task}.loss.{stat}"] = float(b[stat]) if b is not None else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def step_seconds(study: StudyData) -> pd.Series:
    """Per variant: the mean wall time of one optimiser step (``step_seconds`` in the history), over epochs and
    runs; runs recorded before mtlab measured it are left out."""
    rows = study.history[study.history["metric"] == "step_seconds"]
    return rows.groupby("variant", sort=False)["value"].mean()


def comparison_frame(study: StudyData) -> pd.DataFrame:
    """Each variant against its control per task on test accuracy (paired over seeds; see :func:`compare`), with
    Holm-adjusted p-values over the whole table (the study's family of comparisons)."""
    return compare(study.metrics, study.controls, "test", "acc")


def ranking_frame(study: StudyData, summary: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """The variants by mean rank over tasks and seeds (:func:`rank_variants`) beside their delta_m, its interval
    and the time per step; empty unless the study has a control and three or more variants with finished runs."""
    if not study.controls or (summary["done"] > 0).sum() < 3:
        return pd.DataFrame()
    ranking = rank_variants(study.metrics, comparisons)
    keep = ["variant", "is_control", "delta_m", "delta_m.ci_low", "delta_m.ci_high", "step_seconds", "done",
            *(f"{t}.acc.mean" for t in study.tasks)]
    return ranking.merge(summary[keep], on="variant", how="left")


def beats_control(comparisons: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The comparisons ("variant on task") better and worse than their control at the Holm-adjusted level."""
    adjusted = comparisons[comparisons["holm_p"] < ALPHA]
    label = adjusted["variant"] + " on " + adjusted["task"]
    return list(label[adjusted["diff_mean"] > 0]), list(label[adjusted["diff_mean"] < 0])


def failed_frame(study: StudyData) -> pd.DataFrame:
    runs = study.runs
    failed = runs[runs["status"] == "failed"]
    return failed[["run_id", "variant", "seed", "attempts", "reason"]].reset_index(drop=True)


def ranked(summary: pd.DataFrame) -> pd.DataFrame:
    """The variants that may be called best: those with two or more finished runs (a single run has no spread, so
    a lucky seed would win), or every variant with a finished run while none has two."""
    done = summary[summary["done"] > 0]
    replicated = done[done["done"] >= 2]
    return replicated if len(replicated) else done


def best_variant(study: StudyData, summary: pd.DataFrame) -> str | None:
    """The ranked variant with the highest delta_m if any variant has a control, else the highest mean accuracy.

    Mean accuracy over tasks only ranks variants that trained every task, so variants that skip a task lose.
    """
    candidates = ranked(summary)
    if candidates.empty:
        return None
    if candidates["delta_m"].notna().any():
        return str(candidates.loc[candidates["delta_m"].idxmax(), "variant"])
    means = candidates[[f"{t}.acc.mean" for t in study.tasks]].mean(axis=1, skipna=False)
    if means.notna().any():
        return str(candidates.loc[means.idxmax(), "variant"])
    return str(candidates.iloc[0]["variant"])


def representative_run(study: StudyData, variant: str) -> str | None:
    """The finished run whose test accuracy (mean over tasks) is closest to the variant's median; ties: lower seed."""
    rows = study.metrics[
        (study.metrics["variant"] == variant)
        & (study.metrics["split"] == "test")
        & (study.metrics["metric"] == "acc")
        & (study.metrics["task"] != "")
    ]
    if rows.empty:
        return None
    per_run = rows.groupby(["run_id", "seed"], sort=False)["value"].mean().reset_index()
    distance = (per_run["value"] - per_run["value"].median()).abs()
    per_run = per_run.assign(distance=distance).sort_values(["distance", "seed"], kind="stable")
    return str(per_run.iloc[0]["run_id"])


# ------------------------------------------------------------------------------------------------ display cells


@dataclass(frozen=True)
class Cell:
    """A displayed value: ``text`` (the main reading), an optional ``note`` shown beside or below it, emphasis."""

    text: str
    note: str = ""
    strong: bool = False
    kind: str = "number"  # "number" (right-aligned), "text", or "code" (identifiers, monospace)

    @property
    def plain(self) -> str:
        return f"{self.text} {self.note}".strip()


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    caption: str = ""


def summary_table(study: StudyData, summary: pd.DataFrame) -> Table:
    headers = ["Variant", "n"]
    for task in study.tasks:
        headers += [f"{task} test acc (%)", f"{task} test loss"]
    headers += ["Δm (%)", "Parameters", "Train time"]
    best = {t: ranked(summary)[f"{t}.acc.mean"].max() for t in study.tasks}
    rows = []
    for r in summary.to_dict("records"):
        name = variant_label(r)
        n = str(r["done"]) if r["done"] == r["runs"] else f"{r['done']} of {r['runs']}"
        cells = [Cell(name, kind="text"), Cell(n)]
        for task in study.tasks:
            mean = r[f"{task}.acc.mean"]
            cells.append(
                Cell(
                    f"{_pct(mean)} ± {_pct(r[f'{task}.acc.std'])}" if _ok(mean) else MISSING,
                    note=f"[{_pct(r[f'{task}.acc.ci_low'])}, {_pct(r[f'{task}.acc.ci_high'])}]"
                    if _ok(r[f"{task}.acc.ci_low"])
                    else (f"[{MISSING}]" if _ok(mean) else ""),
                    strong=_ok(mean) and mean == best[task],
                )
            )
            loss = r[f"{task}.loss.mean"]
            cells.append(Cell(f"{loss:.3f} ± {_num(r[f'{task}.loss.std'], '.3f')}" if _ok(loss) else MISSING))
        cells.append(delta_m_cell(r))
        cells.append(Cell(f"{int(r['parameters']):,}" if _ok(r["parameters"]) else MISSING))
        cells.append(Cell(_duration(r["seconds"])))
        rows.append(cells)
    caption = (
        "Test accuracy: mean ± sample std over seeds, 95% Student-t interval in brackets, best mean per task in bold "
        "(variants with a single finished run are not ranked); '–' where there are too few finished runs. n = finished "
        "runs. Δm: mean relative change of test accuracy against the control over the tasks both train (Maninis et "
        f"al., 2019), with its {DELTA_M_CI}. Train time: mean per run."
    )
    return Table(headers, rows, caption)


DELTA_M_CI = (
    "95% seed-paired percentile bootstrap interval in brackets (scipy.stats.bootstrap, 9,999 resamples of the seeds "
    "the variant and its controls share, fixed seed; with 3 seeds it spans the worst to the best single seed)"
)
DELTA_M_DEFINITION = (
    "Δm = 100/T · Σ_t (M_t − M_control,t) / M_control,t over the T tasks with a control, M = mean test accuracy over "
    "seeds: the flat mean over tasks' metrics of Maninis et al. (2019) and Nash-MTL; LibMTL first averages the "
    "metrics within each task, which is the same here, each task having one metric."
)


def delta_m_cell(row: dict[str, Any]) -> Cell:
    dm = row["delta_m"]
    if row["is_control"] and not _ok(dm):
        return Cell("control")
    low, high = row["delta_m.ci_low"], row["delta_m.ci_high"]
    note = f"[{_signed(low, '.2f')}, {_signed(high, '.2f')}]" if _ok(low) else (f"[{MISSING}]" if _ok(dm) else "")
    return Cell(_signed(dm, ".2f"), note=note)


def ranking_table(study: StudyData, ranking: pd.DataFrame, comparisons: pd.DataFrame) -> Table:
    headers = ["Rank", "Variant", "Mean rank", "Δm (%)"]
    headers += [f"{t} test acc (%)" for t in study.tasks]
    headers += ["Time per step", f"vs control (W/T/L, Holm α={ALPHA:g})"]
    rows = []
    for i, r in enumerate(ranking.to_dict("records"), 1):
        rank = Cell(f"{r['mean_rank']:.2f}", note=f"({r['cells']} cells)")
        cells = [Cell(str(i)), Cell(variant_label(r), kind="text"), rank, delta_m_cell(r)]
        cells += [Cell(_pct(r[f"{t}.acc.mean"])) for t in study.tasks]
        cells.append(Cell(_step_time(r["step_seconds"])))
        if r["compared"]:
            verdict = f"{r['wins']} / {r['ties']} / {r['losses']}"
        else:
            verdict = "control" if r["is_control"] else MISSING
        cells.append(Cell(verdict, strong=r["wins"] > 0))
        rows.append(cells)
    family = len(comparisons["holm_p"].dropna())
    caption = (
        "Variants by mean rank of test accuracy (1 = best) over every (task, seed) cell: in each cell the variants "
        "that trained the task and finished the seed are ranked, ties sharing the mean rank. Δm with its "
        f"{DELTA_M_CI}. Time per step: wall time of one optimiser step, mean over epochs and runs (for stacked seeds, "
        "the group's time divided by the seeds). W/T/L: tasks on which the variant is better / not distinguishable / "
        f"worse than its control at Holm-adjusted p < {ALPHA:g} (paired t-test; the family is the {family} "
        "comparisons of the comparisons table)."
    )
    return Table(headers, rows, caption)


def comparison_table(comparisons: pd.DataFrame) -> Table:
    headers = [
        "Variant", "Task", "Control", "Pairs", "Δ acc (pp)", "95% CI (pp)", "Effect size d_z", "Paired t p",
        "Holm p", "Wilcoxon p",
    ]
    rows = [
        [
            Cell(r["variant"], kind="text"),
            Cell(r["task"], kind="text"),
            Cell(r["control"], kind="text"),
            Cell(str(r["n_pairs"])),
            Cell(_signed(100 * r["diff_mean"], ".2f"), strong=_ok(r["holm_p"]) and r["holm_p"] < ALPHA),
            Cell(
                f"[{_signed(100 * r['diff_ci_low'], '.2f')}, {_signed(100 * r['diff_ci_high'], '.2f')}]"
                if _ok(r["diff_ci_low"])
                else MISSING
            ),
            Cell(_signed(r["effect_size"], ".2f")),
            Cell(format_p(r["t_p"])),
            Cell(format_p(r["holm_p"])),
            Cell(format_p(r["wilcoxon_p"])),
        ]
        for r in comparisons.to_dict("records")
    ]
    family = len(comparisons["holm_p"].dropna())
    caption = (
        "Test accuracy of each variant minus its control's, paired by seed over the seeds both finished, in "
        "percentage points. Effect size: Cohen's d_z, the mean paired difference over the sd of the differences. "
        "p-values are two-sided; Holm p: the paired t p-values adjusted by Holm's step-down method over the family of "
        f"all {family} comparisons in this table (every variant and task against its control; undefined tests left "
        "out). With few pairs the Wilcoxon test cannot reach small values (3 pairs: p ≥ 0.25). "
        f"Bold: Holm p < {ALPHA:g}."
    )
    return Table(headers, rows, caption)


def failed_table(failed: pd.DataFrame) -> Table:
    rows = [
        [
            Cell(r["run_id"], kind="code"),
            Cell(r["variant"], kind="text"),
            Cell(str(r["seed"])),
            Cell(str(r["attempts"])),
            Cell(" ".join(str(r["reason"] or "no reason recorded").split()), kind="text"),
        ]
        for r in failed.to_dict("records")
    ]
    return Table(
        ["Run", "Variant", "Seed", "Attempts", "Reason"],
        rows,
        "Runs that raised or diverged (details in runs/<run>/error.txt). Resuming the study skips them unless "
        "it is asked to retry failed runs.",
    )


def variant_label(row: dict[str, Any]) -> str:
    """A summary row's variant name, marked when other variants are compared with it."""
    return row["variant"] + (" (control)" if row["is_control"] else "")


def format_p(p: float) -> str:
    """A p-value as a number: three decimals down to 0.001, then scientific ('–' when the test is undefined)."""
    if not _ok(p):
        return MISSING
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _ok(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _pct(x: float) -> str:
    return f"{100 * x:.2f}" if _ok(x) else MISSING


def _num(x: float, spec: str) -> str:
    return format(x, spec) if _ok(x) else MISSING


def _signed(x: float, spec: str) -> str:
    return format(x, "+" + spec) if _ok(x) else MISSING


def _step_time(seconds: float) -> str:
    if not _ok(seconds):
        return MISSING
    return f"{1000 * seconds:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _duration(seconds: float) -> str:
    if not _ok(seconds):
        return MISSING
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
