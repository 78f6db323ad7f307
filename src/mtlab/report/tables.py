"""The report's tables: what a study found, as numeric frames first and as display cells second.

Everything here reads one :class:`StudyData` snapshot of the results store (never printed text, never run
directories), and every statistic comes from :mod:`mtlab.report.stats`; this module only arranges and formats
them. Each task is scored by its type's metrics, each with its direction (:class:`~mtlab.study.store.TaskInfo`):
tables have a column per metric, and summaries, rankings, Δm and comparisons use each task's primary metric the
right way up. The numeric frames are what a script wants (values as stored: fractions for accuracy); :class:`Table`
is what a reader wants (fractions in percent, other metrics in their units - :mod:`mtlab.report.units` -, p-values
as numbers, '–' wherever a value does not exist yet, e.g. the interval of a variant with one seed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mtlab.config.schema import RunConfig
from mtlab.errors import MtlabError
from mtlab.pages.blocks import Cell, Table
from mtlab.report.stats import ALPHA, IDENTICAL_TOLERANCE, compare, delta_m, rank_variants, summarize
from mtlab.report.units import MISSING, difference_unit, format_value, label, phrase
from mtlab.study.controls import resolve_controls
from mtlab.study.lock import driver_active
from mtlab.study.spec import RunSpec, StudySpec
from mtlab.study.store import ResultStore, TaskInfo

STORE_NAME = "results.sqlite"  # the same name as mtlab.study.runner.STORE_NAME, without importing the trainer (torch)


# ------------------------------------------------------------------------------------------------------ loading


@dataclass
class StudyData:
    """One read of a study's store: everything the report is made from.

    ``runs`` holds the runs of the current spec (every status) in study order; ``metrics`` and ``history`` only
    the finished ones. ``task_info`` says what each task is (type, primary metric, directions; see :meth:`task`).
    ``notes`` collects what could not be worked out (e.g. controls of a spec that no longer validates), so the
    report can say so instead of failing. A run the store says is ``running`` while no driver holds the study's lock
    (its driver was killed) reads as ``pending``. ``superseded``: the stored runs of earlier definitions of the
    directory (replaced with ``mtlab run --redefine``), by status; they stay in the store, out of these tables.
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
    task_info: dict[str, TaskInfo] = field(default_factory=dict)
    superseded: dict[str, int] = field(default_factory=dict)

    def task(self, task: str) -> TaskInfo:
        """What ``task`` is; a task the store has no description of was trained before typed tasks (multiclass)."""
        return self.task_info.get(task) or TaskInfo(task)

    @property
    def measure(self) -> dict[str, tuple[str, bool]]:
        """Each task's primary metric and whether higher is better, as :mod:`mtlab.report.stats` takes them."""
        return {t: self.task(t).measure() for t in self.tasks}

    def primary(self, task: str) -> str:
        return self.task(task).primary

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
    notes: list[str] = []
    with ResultStore(store_path(directory)) as store, store.snapshot():  # one moment, even while a driver writes
        info = store.info()
        runs = store.runs_frame()
        metrics = store.metrics_frame()
        history = store.history_frame()
        recorded = store.task_info(notes=notes)
        current = store.statuses()
        superseded = [s for r, s in store.statuses(active_only=False).items() if r not in current]
    if not driver_active(directory):  # nothing trains the runs a killed driver left running
        runs["status"] = runs["status"].replace("running", "pending")
    controls, configured_tasks = _controls_and_tasks(info, runs, notes)
    variants = list(dict.fromkeys(runs["variant"]))
    measured = [t for t in dict.fromkeys(metrics.loc[metrics["split"] == "test", "task"]) if t]
    tasks = list(dict.fromkeys([*configured_tasks, *measured]))
    return StudyData(
        directory, info, runs, metrics, history, controls, variants, tasks, notes, _task_info(tasks, recorded, metrics),
        {status: superseded.count(status) for status in dict.fromkeys(superseded)},
    )


def _task_info(tasks: list[str], recorded: dict[str, TaskInfo], metrics: pd.DataFrame) -> dict[str, TaskInfo]:
    """Each task's description (a task without one was stored before typed tasks: multiclass, scored by accuracy),
    keeping only the metrics its finished runs recorded (runs before typed tasks have no f1, for instance)."""
    test = metrics[(metrics["split"] == "test") & (metrics["task"] != "")]
    present = test.groupby("task")["metric"].unique()
    found = {}
    for task in tasks:
        info = recorded.get(task) or TaskInfo(task)
        found[task] = info.restricted(present[task]) if task in present.index else info
    return found


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
    """One row per variant: run counts, per task and metric of its type the test n, mean, std and 95% CI, the test
    loss, delta_m (its interval and ``delta_m.n``, the seeds the variant and its controls share, which both use),
    size, time.

    Columns ``<task>.<metric>.<stat>`` for every metric of the task (:attr:`TaskInfo.metrics`, primary first) and
    ``<task>.loss.mean|std``. Values are as stored (accuracy as a fraction); a variant with no finished run has NaN
    statistics.
    """
    names = list(dict.fromkeys(m for t in study.tasks for m in study.task(t).metrics))
    stats = {m: summarize(study.metrics, "test", m).set_index(["variant", "task"]) for m in [*names, "loss"]}
    dm = delta_m(study.metrics, study.controls, "test", study.measure).set_index("variant")
    step = step_seconds(study)
    times = run_times(study)
    controls = set(study.control_variants)
    columns = ["variant", "runs", "done", "failed", "is_control", "delta_m", "delta_m.ci_low", "delta_m.ci_high",
               "delta_m.n", "parameters", "seconds", "train_seconds", "wall_seconds", "step_seconds"]
    for task in study.tasks:
        for metric in study.task(task).metrics:
            columns += [f"{task}.{metric}.{s}" for s in ("n", "mean", "std", "ci_low", "ci_high")]
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
            "delta_m.n": float(dm["n_seeds"].get(variant, math.nan)),  # the paired seeds of both; NaN: no delta_m
            "parameters": float(done["parameters"].median()) if len(done) else math.nan,
            "seconds": float(done["seconds"].mean()) if len(done) else math.nan,
            "train_seconds": _mean(times["train_seconds"].reindex(done["run_id"])),
            "wall_seconds": _mean(times["wall_seconds"].reindex(done["run_id"])),
            "step_seconds": float(step.get(variant, math.nan)),
        }
        for task in study.tasks:
            for metric in study.task(task).metrics:
                a = stats[metric].loc[(variant, task)] if (variant, task) in stats[metric].index else None
                row[f"{task}.{metric}.n"] = int(a["n"]) if a is not None else 0
                for stat in ("mean", "std", "ci_low", "ci_high"):
                    row[f"{task}.{metric}.{stat}"] = float(a[stat]) if a is not None else math.nan
            b = stats["loss"].loc[(variant, task)] if (variant, task) in stats["loss"].index else None
            for stat in ("mean", "std"):
                row[f"{task}.loss.{stat}"] = float(b[stat]) if b is not None else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def run_times(study: StudyData) -> pd.DataFrame:
    """Per finished run (index: run_id): ``train_seconds``, its training time (the epochs, training and validation:
    as stored, or for a store written before it, the history's per-epoch seconds added up), and ``wall_seconds``,
    from the start of the run to its record (the worker's start-up, data loading and test evaluation included; the
    fit's time where the store has no start)."""
    runs = study.runs[study.runs["status"] == "done"].set_index("run_id")
    epochs = study.history[study.history["metric"] == "seconds"].groupby("run_id")["value"].sum()
    stored = runs["train_seconds"] if "train_seconds" in runs else pd.Series(math.nan, index=runs.index)
    train = stored.astype(float).fillna(epochs.reindex(runs.index))
    wall = (runs["finished"] - runs["started"]).astype(float)
    wall = wall.where(wall >= 0).fillna(runs["seconds"].astype(float))
    return pd.DataFrame({"train_seconds": train, "wall_seconds": wall}, index=runs.index)


def _mean(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean()) if len(values) else math.nan


def step_seconds(study: StudyData) -> pd.Series:
    """Per variant: the mean wall time of one optimiser step (``step_seconds`` in the history), over epochs and
    runs; runs recorded before mtlab measured it are left out."""
    rows = study.history[study.history["metric"] == "step_seconds"]
    return rows.groupby("variant", sort=False)["value"].mean()


def comparison_frame(study: StudyData) -> pd.DataFrame:
    """Each variant against its control per task on the task's primary test metric (paired over seeds; see
    :func:`compare`), with Holm-adjusted p-values over the whole table (the study's family of comparisons)."""
    return compare(study.metrics, study.controls, "test", study.measure)


def ranking_frame(study: StudyData, summary: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """The variants by mean rank over tasks and seeds (:func:`rank_variants`) beside their delta_m, its interval
    and the time per step; empty unless the study has a control and three or more variants with finished runs."""
    if not study.controls or (summary["done"] > 0).sum() < 3:
        return pd.DataFrame()
    apart = partial_controls(study)
    metrics = study.metrics
    ranking = rank_variants(metrics[~metrics["variant"].isin(apart)], comparisons, "test", study.measure)
    ranking["rank"] = [float(i) for i in range(1, len(ranking) + 1)]
    if apart:  # listed after the ranks, without one: mean_rank and rank NaN
        left_out = rank_variants(metrics[metrics["variant"].isin(apart)], comparisons, "test", study.measure)
        left_out[["mean_rank", "rank"]] = math.nan
        ranking = pd.concat([ranking, left_out], ignore_index=True)
    keep = ["variant", "is_control", "delta_m", "delta_m.ci_low", "delta_m.ci_high", "delta_m.n", "step_seconds",
            "done", *(f"{t}.{study.primary(t)}.mean" for t in study.tasks)]
    return ranking.merge(summary[keep], on="variant", how="left")


def partial_controls(study: StudyData) -> list[str]:
    """The controls that train fewer tasks than the study (single-task baselines): out of the ranking, whose cells
    they would enter only on their own task - a mean rank over 2 cells beside one over 6 is no comparison."""
    test = study.metrics[(study.metrics["split"] == "test") & (study.metrics["task"] != "")]
    trained = test.groupby("variant")["task"].agg(lambda tasks: set(tasks))
    return [v for v in study.control_variants if v in trained and trained[v] < set(study.tasks)]


def ranking_caption_apart(ranking: pd.DataFrame) -> str:
    """The caption's sentence on the controls left out of the ranks (empty when none is)."""
    apart = list(ranking.loc[ranking["rank"].isna(), "variant"]) if len(ranking) else []
    if not apart:
        return ""
    names = ", ".join(apart)
    return (
        f"Not ranked: the single-task control{'s' if len(apart) > 1 else ''} {names}, listed after the ranks - a "
        "control trains fewer tasks than the variants it controls, so it would be ranked on its own task's cells "
        "alone; read it through the variants' Δm and W/T/L instead."
    )


def no_ranking_reason(study: StudyData, summary: pd.DataFrame) -> str | None:
    """Why :func:`ranking_frame` has no rows (a sentence for the report and the LaTeX notes); None when it has."""
    done = int((summary["done"] > 0).sum())
    if study.controls and done >= 3:
        return None
    needs = "a control and three or more variants with finished runs"
    has = f"{'a control' if study.controls else 'no control'} and {done} variant{'s' if done != 1 else ''} with " \
        "finished runs"  # fmt: skip
    return f"No ranking: it needs {needs} (this study has {has})."


def beats_control(comparisons: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The comparisons ("variant on task") better and worse than their control at the Holm-adjusted level, by each
    task's direction (a lower MAE is better)."""
    names = comparisons["variant"] + " on " + comparisons["task"]
    return list(names[comparisons["verdict"] == "win"]), list(names[comparisons["verdict"] == "loss"])


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
    """The ranked variant with the highest delta_m if any variant has a control (each delta_m over the seeds that
    variant shares with its controls, as the tables show it); else the best on the tasks'
    primary metrics: the best mean when every task is scored by the same metric, the best mean rank over tasks
    otherwise (values in different units do not average).

    Only variants that trained every task can win that way, so variants that skip a task lose.
    """
    candidates = ranked(summary)
    if candidates.empty:
        return None
    if candidates["delta_m"].notna().any():
        return str(candidates.loc[candidates["delta_m"].idxmax(), "variant"])
    # Each task's primary mean, signed so that higher is better.
    signed = pd.DataFrame(
        {t: candidates[f"{t}.{m}.mean"] * (1 if up else -1) for t, (m, up) in study.measure.items()},
        index=candidates.index,
    )
    if len({m for m, _ in study.measure.values()}) > 1:
        signed = -signed.rank(ascending=False)  # mean rank over tasks (1 = best), negated: higher is better
    score = signed.mean(axis=1, skipna=False)
    if score.notna().any():
        return str(candidates.loc[score.idxmax(), "variant"])
    return str(candidates.iloc[0]["variant"])


def representative_run(study: StudyData, variant: str) -> str | None:
    """The finished run closest to the variant's median on the tasks' primary test metrics: its value (mean over
    tasks when they share one metric) nearest the median; with different metrics, the sum over tasks of the
    distance to each task's median in units of that task's spread over the runs. Ties: lower seed."""
    measure = study.measure
    m = study.metrics
    rows = m[(m["variant"] == variant) & (m["split"] == "test") & (m["task"] != "")]
    rows = rows[rows["metric"] == rows["task"].map(lambda t: measure[t][0] if t in measure else "acc")]
    if rows.empty:
        return None
    if rows["metric"].nunique() == 1:
        per_run = rows.groupby(["run_id", "seed"], sort=False)["value"].mean().reset_index()
        distance = (per_run["value"] - per_run["value"].median()).abs()
    else:
        wide = rows.pivot_table(index=["run_id", "seed"], columns="task", values="value", sort=False)
        spread = wide.std(ddof=0).replace(0, 1).fillna(1)
        distance = ((wide - wide.median()).abs() / spread).sum(axis=1).reset_index(drop=True)
        per_run = wide.reset_index()[["run_id", "seed"]]
    per_run = per_run.assign(distance=distance).sort_values(["distance", "seed"], kind="stable")
    return str(per_run.iloc[0]["run_id"])


# ------------------------------------------------------------------------------------------------ display cells


def summary_table(study: StudyData, summary: pd.DataFrame) -> Table:
    headers = ["Variant", "n"]
    for task in study.tasks:
        info = study.task(task)
        headers += [f"{task} test {label(m, info.higher_is_better(m))}" for m in info.metrics]
        headers.append(f"{task} test {label('loss', False)}")
    headers += ["Δm (%)", "Parameters", "Training time", "Wall time"]
    candidates = ranked(summary)
    best = {}
    for task in study.tasks:
        info = study.task(task)
        for m in info.metrics:
            column = candidates[f"{task}.{m}.mean"]
            best[(task, m)] = column.max() if info.higher_is_better(m) else column.min()
    rows = []
    for r in summary.to_dict("records"):
        name = variant_label(r)
        n = str(r["done"]) if r["done"] == r["runs"] else f"{r['done']} of {r['runs']}"
        cells = [Cell(name, kind="text"), Cell(n)]
        for task in study.tasks:
            info = study.task(task)
            for m in info.metrics:
                cells.append(metric_cell(r, task, m, interval=m == info.primary, strong_at=best[(task, m)]))
            loss = r[f"{task}.loss.mean"]
            cells.append(Cell(f"{loss:.3f} ± {_num(r[f'{task}.loss.std'], '.3f')}" if _ok(loss) else MISSING))
        cells.append(delta_m_cell(r))
        cells.append(Cell(f"{int(r['parameters']):,}" if _ok(r["parameters"]) else MISSING))
        cells.append(Cell(_duration(r["train_seconds"])))
        cells.append(Cell(_duration(r["wall_seconds"])))
        rows.append(cells)
    caption = (
        "Test metrics of each task (↑ higher is better, ↓ lower is better): mean ± sample std over seeds, best mean "
        "per column in bold (variants with a single finished run are not ranked); for each task's primary metric "
        f"(its first column: {_primaries(study)}) the 95% Student-t interval in brackets; '–' where there are too "
        "few finished runs. Accuracy, F1 and AUROC in percent; MAE and RMSE in the target's units; R² and losses "
        "as they are. n = finished runs. Δm: mean relative change of each task's primary metric against the "
        "control over the tasks both train, signed so that positive is better (Maninis et al., 2019), with its "
        f"{DELTA_M_CI}. {TIMES}"
    )
    return Table(headers, rows, caption)


def metric_cell(row: dict[str, Any], task: str, metric: str, *, interval: bool, strong_at: float) -> Cell:
    """``mean ± std`` of ``<task>.<metric>`` in a summary row, with its 95% interval as the note when asked."""
    key = f"{task}.{metric}"
    mean = row[f"{key}.mean"]
    if not _ok(mean):
        return Cell(MISSING)
    text = f"{format_value(metric, mean)} ± {format_value(metric, row[f'{key}.std'], reference=mean)}"
    note = ""
    if interval:
        low, high = row[f"{key}.ci_low"], row[f"{key}.ci_high"]
        note = (
            f"[{format_value(metric, low, reference=mean)}, {format_value(metric, high, reference=mean)}]"
            if _ok(low)
            else f"[{MISSING}]"
        )
    return Cell(text, note=note, strong=mean == strong_at)


def _primaries(study: StudyData) -> str:
    """Each task's primary metric in words: ``accuracy for item and group, MAE for age``."""
    by_metric: dict[str, list[str]] = {}
    for task in study.tasks:
        by_metric.setdefault(study.primary(task), []).append(task)
    return ", ".join(f"{phrase(m)} for {' and '.join(tasks)}" for m, tasks in by_metric.items())


TIMES = (
    "Training time: the epochs (training and validation), mean per run; wall time: from the start of a run to its "
    "result, mean per run, with the worker's start-up, the data loading and the test evaluation (the first run of a "
    "worker pays most of them; seeds trained together share their group's)."
)
DELTA_M_CI = (
    "95% seed-paired percentile bootstrap interval in brackets, Δm and interval both over the n seeds the variant "
    "and its controls share (n beside the interval; a seed only one side finished counts in neither) "
    "(scipy.stats.bootstrap, 9,999 resamples of those seeds, fixed seed; with 3 seeds each of the 10 possible "
    "resamples has probability ≥ 1/27 > 2.5%, so the interval runs from the lowest to the highest Δm among them: "
    "for one task the worst to the best single seed, for several tasks it can reach beyond the single seeds' Δm)"
)
DELTA_M_DEFINITION = (
    "Δm = 100/T · Σ_t (−1)^l_t (M_t − M_control,t) / |M_control,t| over the T tasks with a control, M = the mean of "
    "the task's primary test metric over the n seeds the variant and its controls share, l_t = 1 when lower is "
    "better (MAE, RMSE, loss) and 0 when higher is (accuracy, R²): the flat mean over tasks' metrics of Maninis et "
    "al. (2019) and Nash-MTL, positive when the variant is better; LibMTL first averages the metrics within each "
    "task, which is the same here, each task having one metric."
)


def delta_m_cell(row: dict[str, Any]) -> Cell:
    """Δm with its interval and n, the seeds the variant and its controls share (which both are computed on)."""
    dm = row["delta_m"]
    if row["is_control"] and not _ok(dm):
        return Cell("control")
    low, high, n = row["delta_m.ci_low"], row["delta_m.ci_high"], row.get("delta_m.n", math.nan)
    interval = f"[{_signed(low, '.2f')}, {_signed(high, '.2f')}]" if _ok(low) else f"[{MISSING}]"
    if _ok(dm):
        return Cell(_signed(dm, ".2f"), note=f"{interval} n={int(n)}" if _ok(n) else interval)
    return Cell(MISSING, note="no seed shared with the control" if _ok(n) and n == 0 else "")


def ranking_table(study: StudyData, ranking: pd.DataFrame, comparisons: pd.DataFrame) -> Table:
    headers = ["Rank", "Variant", "Mean rank", "Δm (%)"]
    headers += [f"{t} test {label(*study.measure[t])}" for t in study.tasks]
    headers += ["Time per step", f"vs control (W/T/L, Holm α={ALPHA:g})"]
    rows = []
    for r in ranking.to_dict("records"):
        if _ok(r["rank"]):
            position, rank = Cell(str(int(r["rank"]))), Cell(f"{r['mean_rank']:.2f}", note=f"({r['cells']} cells)")
        else:
            position, rank = Cell(MISSING), Cell("not ranked", note=f"(single-task control, {r['cells']} cells)")
        cells = [position, Cell(variant_label(r), kind="text"), rank, delta_m_cell(r)]
        cells += [Cell(format_value(study.primary(t), r[f"{t}.{study.primary(t)}.mean"])) for t in study.tasks]
        cells.append(Cell(_step_time(r["step_seconds"])))
        if r["compared"]:
            verdict = f"{r['wins']} / {r['ties']} / {r['losses']}"
        else:
            verdict = "control" if r["is_control"] else MISSING
        cells.append(Cell(verdict, strong=r["wins"] > 0))
        rows.append(cells)
    family = len(comparisons["holm_p"].dropna())
    caption = (
        "Variants by mean rank (1 = best) over every (task, seed) cell of each task's primary test metric "
        f"({_primaries(study)}; ↑ higher, ↓ lower is better): in each cell the variants that trained the task and "
        "finished the seed are ranked, ties sharing the mean rank. Δm with its "
        f"{DELTA_M_CI}. Time per step: the training time of one optimiser step (no start-up, data loading or "
        "evaluation: not the wall time), mean over epochs and runs (for stacked seeds, "
        "the group's time divided by the seeds). W/T/L: tasks on which the variant is better / not distinguishable / "
        f"worse than its control at Holm-adjusted p < {ALPHA:g} (paired t-test; the family is the {family} "
        "comparisons of the comparisons table with a defined test; an undefined test counts as T)."
    )
    caption = f"{caption} {ranking_caption_apart(ranking)}".strip()
    return Table(headers, rows, caption)


VERDICT_WORDS = {"win": "better", "loss": "worse", "tie": "not distinguishable"}
UNDEFINED_TESTS = (
    "The paired t-test is undefined ('–', the reason beside it, no verdict; left out of the family) with fewer than "
    "two pairs, when variant and control are identical on every seed, or when the difference is the same on every "
    "seed: without spread, t = mean / (sd / √n) is infinite whatever the difference's size, and d_z undefined. "
    f"'Identical' and 'the same' mean within {IDENTICAL_TOLERANCE:g} in the metric's units, an absolute tolerance "
    "above the float64 rounding of a difference of values up to ~1000 (< 3e-13) and far below any real difference "
    "(one test example in a million is 1e-6)"
)



def comparison_table(comparisons: pd.DataFrame) -> Table:
    headers = [
        "Variant", "Task", "Control", "Metric", "Pairs", "Δ", "95% CI", "Effect size d_z", "Paired t p", "Holm p",
        "Wilcoxon p", f"Verdict (Holm α={ALPHA:g})",
    ]
    rows = []
    for r in comparisons.to_dict("records"):
        m = r["metric"]
        scale_of = r["control_mean"]  # differences get the decimals of the values they are differences of
        significant = _ok(r["holm_p"]) and r["holm_p"] < ALPHA
        rows.append(
            [
                Cell(r["variant"], kind="text"),
                Cell(r["task"], kind="text"),
                Cell(r["control"], kind="text"),
                Cell(label(m, r["higher_is_better"], units=False), kind="text"),
                Cell(str(r["n_pairs"])),
                Cell(
                    format_value(m, r["diff_mean"], signed=True, reference=scale_of),
                    note=difference_unit(m),
                    strong=significant,
                ),
                Cell(
                    f"[{format_value(m, r['diff_ci_low'], signed=True, reference=scale_of)}, "
                    f"{format_value(m, r['diff_ci_high'], signed=True, reference=scale_of)}]"
                    if _ok(r["diff_ci_low"])
                    else MISSING
                ),
                Cell(_signed(r["effect_size"], ".2f")),
                Cell(format_p(r["t_p"]), note=f"({r['undefined']})" if r.get("undefined") else ""),
                Cell(format_p(r["holm_p"])),
                Cell(format_p(r["wilcoxon_p"])),
                Cell(VERDICT_WORDS[r["verdict"]] if _ok(r["holm_p"]) else MISSING, kind="text", strong=significant),
            ]
        )
    family = len(comparisons["holm_p"].dropna())
    undefined = len(comparisons) - family
    caption = (
        "Each task's primary test metric, variant minus its control, paired by seed over the seeds both finished: "
        "in percentage points (pp) for accuracy, F1 and AUROC, else in the metric's units; ↑: higher is better, ↓: "
        "lower is better (a negative Δ of MAE is an improvement). Effect size: Cohen's d_z, the mean paired "
        "difference over the sd of the differences. p-values are two-sided; Holm p: the paired t p-values adjusted "
        f"by Holm's step-down method over the family of all {family} comparisons in this table with a defined test "
        f"(every variant and task against its control). {UNDEFINED_TESTS}. Undefined tests in this table: "
        f"{undefined}. With few pairs the Wilcoxon test cannot reach small values (3 pairs: p ≥ 0.25). Verdict and "
        f"bold: Holm p < {ALPHA:g}, better or worse by the metric's direction."
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
