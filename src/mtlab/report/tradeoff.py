"""Figures of where variants land between tasks and along a numeric axis: the two-task trade-off (Pareto) plot and
the sweep plot, drawn from a :class:`~mtlab.report.tables.StudyData` snapshot like every report figure."""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mtlab.report.layout import CHAR_WIDTH, place_labels
from mtlab.report.stats import t_interval
from mtlab.report.tables import StudyData
from mtlab.report.units import label, phrase, scale
from mtlab.weighting import METHODS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH = 11.0
NUMBER = re.compile(r"^(?:(?P<name>[A-Za-z_][\w.]*)\s*=\s*)?(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$")


def test_primary_per_run(study: StudyData) -> pd.DataFrame:
    """run_id, variant, seed -> one column per task: its primary test metric as stored (accuracy as a fraction),
    NaN where the run did not train the task."""
    m = study.metrics
    rows = m[(m["split"] == "test") & (m["task"] != "")]
    measure = study.measure
    rows = rows[rows["metric"] == rows["task"].map(lambda t: measure[t][0] if t in measure else None)]
    if rows.empty:
        return pd.DataFrame(columns=["run_id", "variant", "seed"])
    return rows.pivot_table(index=["run_id", "variant", "seed"], columns="task", values="value").reset_index()


def axis_label(study: StudyData, task: str) -> str:
    """``item test acc ↑ (%)``; a lower-is-better axis says it is drawn inverted, so that better is up / right."""
    metric, higher = study.measure[task]
    return f"{task} test {label(metric, higher)}" + ("" if higher else " (inverted: better up/right)")


def task_pairs(study: StudyData, per_run: pd.DataFrame) -> list[tuple[str, str]]:
    """Pairs of tasks that some variant trains together, in task order."""
    pairs = []
    for a, b in itertools.combinations(study.tasks, 2):
        if a in per_run and b in per_run and (per_run[a].notna() & per_run[b].notna()).any():
            pairs.append((a, b))
    return pairs


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of ``points`` (n, 2), both coordinates to maximise, sorted by x (give
    lower-is-better coordinates negated)."""
    keep = [
        i
        for i, p in enumerate(points)
        if not any((q >= p).all() and (q > p).any() for j, q in enumerate(points) if j != i)
    ]
    return np.array(sorted(keep, key=lambda i: points[i, 0]), dtype=int)


def _static(config: dict) -> bool:
    """Whether a stored run config's weighting method is static (a stored config always names its method; one no
    longer installed is not)."""
    method = config.get("loss", {}).get("method")
    return method in METHODS and METHODS.get(method).static


def static_variants(study: StudyData) -> list[str]:
    """Variants all of whose runs use a static method (constant weights: ``loss.method: fixed``) and train two or
    more tasks: the static sweep."""
    found = []
    for variant, runs in study.runs.groupby("variant", sort=False):
        configs = [json.loads(c) for c in runs["config"]]
        if all(_static(c) and len(c.get("tasks") or [None, None]) > 1 for c in configs):
            found.append(variant)
    return [v for v in study.variants if v in found]


def tradeoff_figure(study: StudyData, colors: dict) -> Figure | None:
    """Task A vs task B on their primary test metrics: per variant the mean point with 95% t-interval whiskers on
    both axes, its seeds as faint dots, single-task variants as reference lines, the non-dominated means joined; one
    panel per task pair (T > 2). Better is up and right: the axis of a lower-is-better metric is inverted."""
    from matplotlib.figure import Figure

    per_run = test_primary_per_run(study)
    pairs = task_pairs(study, per_run) if len(per_run) else []
    if not pairs:
        return None
    columns = min(len(pairs), 3)
    rows = math.ceil(len(pairs) / columns)
    fig = Figure(figsize=(WIDTH, 4.6 * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).flatten()
    for ax in axes[len(pairs) :]:
        ax.axis("off")
    static_names = set(static_variants(study))
    labelled = []  # (axes, every mean point, the indices to label, names): labelled once the layout is final
    for ax, (a, b) in zip(axes, pairs, strict=False):
        (_, higher_a), (_, higher_b) = study.measure[a], study.measure[b]
        scale_a, scale_b = scale(study.primary(a)), scale(study.primary(b))
        means, names = [], []
        for variant in study.variants:
            mine = per_run[per_run["variant"] == variant]
            both = mine[mine[a].notna() & mine[b].notna()]
            if both.empty:
                continue
            x, y = scale_a * both[a].to_numpy(), scale_b * both[b].to_numpy()
            mx, my = float(x.mean()), float(y.mean())
            (xl, xh), (yl, yh) = t_interval(x), t_interval(y)
            ax.scatter(x, y, s=12, color=colors[variant], alpha=0.3, lw=0, zorder=2)
            if not math.isnan(xl):
                ax.errorbar(mx, my, xerr=[[mx - xl], [xh - mx]], yerr=[[my - yl], [yh - my]], fmt="none",
                            ecolor=colors[variant], elinewidth=1.1, capsize=3, alpha=0.8, zorder=3)
            ax.scatter([mx], [my], s=46, color=colors[variant], edgecolor="#222", lw=0.6, zorder=4, label=variant)
            means.append((mx, my))
            names.append(variant)
        for variant in study.variants:  # single-task references: a line at the variant's mean
            mine = per_run[per_run["variant"] == variant]
            for task, other, line in ((a, b, ax.axvline), (b, a, ax.axhline)):
                if task in mine and mine[task].notna().any() and (other not in mine or mine[other].isna().all()):
                    value = scale(study.primary(task)) * float(mine[task].mean())
                    line(value, color=colors[variant], ls=":", lw=1.4, zorder=1, label=f"{variant} (one task)")
        if means:
            points = np.array(means)
            orient = np.array([1.0 if higher_a else -1.0, 1.0 if higher_b else -1.0])
            static = [i for i, name in enumerate(names) if name in static_names]
            if len(static) > 1:  # the static scalarisation front: what fixed weights alone reach (Xin et al. 2022)
                sweep = np.array(static)[pareto_front(points[static] * orient)]
                sweep = sweep[np.argsort(points[sweep, 0], kind="stable")]
                ax.plot(points[sweep, 0], points[sweep, 1], color="#888", lw=3, alpha=0.45, zorder=1.5,
                        label="static front (fixed weights)")
            front = pareto_front(points * orient)
            front = front[np.argsort(points[front, 0], kind="stable")]  # drawn left to right in data units
            ax.plot(points[front, 0], points[front, 1], color="#444", lw=1, ls="--", zorder=2.5)
            labelled.append((ax, points, [int(i) for i in front], names))
        if not higher_a:
            ax.invert_xaxis()
        if not higher_b:
            ax.invert_yaxis()
        ax.set_xlabel(axis_label(study, a))
        ax.set_ylabel(axis_label(study, b))
        ax.set_title(f"{a} vs {b}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8)
    fig.draw_without_rendering()  # settle the layout, so data -> display positions are final
    for ax, points, front, names in labelled:
        label_points(ax, points, front, [_short(names[i], names) for i in front])
    return fig


def label_points(ax, points: np.ndarray, chosen: list[int], texts: list[str], fontsize: float = 8) -> None:
    """Label ``points[chosen]`` (data units) with ``texts`` where the labels overlap neither each other, nor any of
    ``points``, nor the axes' edge, as far as :func:`~mtlab.report.layout.place_labels` can; positions in display
    points, so they hold at any DPI."""
    to_points = 72 / ax.figure.dpi
    display = ax.transData.transform(points) * to_points  # (n, 2) in points
    box = ax.get_window_extent()
    bounds = (box.x0 * to_points, box.y0 * to_points, box.x1 * to_points, box.y1 * to_points)
    sizes = [(CHAR_WIDTH * fontsize * len(text), 1.25 * fontsize) for text in texts]
    others = [tuple(p) for i, p in enumerate(display) if i not in chosen]
    offsets = place_labels([tuple(display[i]) for i in chosen], sizes, obstacles=others, bounds=bounds)
    for i, text, (w, h), (dx, dy) in zip(chosen, texts, sizes, offsets, strict=True):
        # Align the text on the side facing its point, so a label shorter than its estimated width still ends
        # (or starts) next to the point rather than where the estimate put its far edge.
        ha, x = ("right", dx + w) if dx < -w / 2 else ("center", dx + w / 2) if dx < 0 else ("left", dx)
        va, y = ("top", dy + h) if dy < -h / 2 else ("center", dy + h / 2) if dy < 0 else ("bottom", dy)
        note = ax.annotate(text, points[i], xytext=(x, y), textcoords="offset points", fontsize=fontsize,
                           ha=ha, va=va, zorder=5)
        note.set_in_layout(False)  # placed after the layout; must not move the axes it was placed in


def _short(name: str, names: list[str]) -> str:
    """A point's label without the leading "label, " every two-task variant shares ("two-head, upgrad" -> "upgrad")."""
    head = name.split(", ", 1)
    if len(head) == 2 and all(n.startswith(head[0] + ", ") for n in names):
        return head[1]
    return name


def numeric_axes(study: StudyData) -> dict[str, dict[str, float]]:
    """Grid axes (study-wide or a variant's) whose labels all read as numbers - ``0.3`` or ``lambda=0.3`` with one
    name - with at least two values: ``{axis: {label: value}}``."""
    spec = study.info.get("spec") or {}
    axes: dict[str, list[str]] = {}
    grids = [spec.get("grid") or {}, *((v or {}).get("grid") or {} for v in (spec.get("variants") or {}).values())]
    for grid in grids:
        for axis, values in grid.items():
            labels = list(values) if isinstance(values, dict) else [v if isinstance(v, str) else str(v) for v in values]
            axes.setdefault(axis, [])
            axes[axis] += [str(label) for label in labels if str(label) not in axes[axis]]
    numeric: dict[str, dict[str, float]] = {}
    for axis, labels in axes.items():
        matches = [NUMBER.match(label.strip()) for label in labels]
        if len(labels) < 2 or not all(matches) or len({m["name"] for m in matches}) != 1:
            continue
        numeric[axis] = {label: float(m["value"]) for label, m in zip(labels, matches, strict=True)}
    return numeric


def axis_title(axis: str, values: dict[str, float]) -> str:
    name = NUMBER.match(next(iter(values)).strip())["name"]
    return name or axis


def sweep_figure(study: StudyData, axis: str, values: dict[str, float], colors: dict) -> Figure | None:
    """Each task's primary test metric against a numeric axis: mean with 95% t-interval band, one line per
    combination of the other labels (variant and other axes)."""
    from matplotlib.figure import Figure

    per_run = test_primary_per_run(study)
    if per_run.empty:
        return None
    labels = study.runs.set_index("run_id")["labels"]
    per_run = per_run.assign(labels=per_run["run_id"].map(labels))
    per_run = per_run[per_run["labels"].map(lambda ls: isinstance(ls, dict) and ls.get(axis) in values)]
    if per_run.empty:
        return None
    per_run = per_run.assign(
        x=per_run["labels"].map(lambda ls: values[ls[axis]]),
        line=per_run["labels"].map(lambda ls: ", ".join(v for k, v in ls.items() if k != axis) or "all"),
    )
    tasks = [t for t in study.tasks if t in per_run and per_run[t].notna().any()]
    if not tasks or per_run["x"].nunique() < 2:
        return None
    fig = Figure(figsize=(WIDTH, 3.8), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    line_colors = _line_colors(list(dict.fromkeys(per_run["line"])), study, per_run, colors)
    for ax, task in zip(axes, tasks, strict=True):
        metric, higher = study.measure[task]
        for line, rows in per_run.groupby("line", sort=False):
            stats = []
            for x, at in rows.groupby("x"):
                v = scale(metric) * at[task].dropna().to_numpy()
                if len(v):
                    low, high = t_interval(v)
                    stats.append((x, v.mean(), low, high))
            if not stats:
                continue
            x, mean, low, high = map(np.array, zip(*stats, strict=True))
            ax.plot(x, mean, marker="o", ms=4, lw=2, color=line_colors[line], label=line)
            ok = ~np.isnan(low)
            if ok.sum() > 1:
                ax.fill_between(x[ok], low[ok], high[ok], color=line_colors[line], alpha=0.15, lw=0)
        ax.set_xticks(sorted(set(per_run["x"])))
        ax.set_xlabel(axis_title(axis, values))
        ax.set_title(f"Test {phrase(metric)} — {task}")
        ax.set_ylabel(f"test {label(metric, higher)}")
    handles, labels_ = axes[0].get_legend_handles_labels()
    if len(labels_) > 1:
        fig.legend(handles, labels_, loc="outside lower center", ncols=min(len(labels_), 4), fontsize=8)
    return fig


def _line_colors(lines: list[str], study: StudyData, per_run: pd.DataFrame, colors: dict) -> dict:
    """A line that is one variant keeps the variant's colour; otherwise a colour per line."""
    from matplotlib import colormaps

    variant_of = per_run.groupby("line")["variant"].agg(lambda v: v.iloc[0] if v.nunique() == 1 else None)
    if all(variant_of[line] is not None for line in lines) and len(set(variant_of[lines])) == len(lines):
        return {line: colors[variant_of[line]] for line in lines}
    cmap = colormaps["tab10"]
    return {line: cmap(i % cmap.N) for i, line in enumerate(lines)}
