"""The report's figures, drawn from a :class:`~mtlab.report.tables.StudyData` snapshot and saved as PNG, SVG or PDF.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through ``pyplot``: no global backend or
figure registry is touched, so building a report inside a notebook or a long-lived process leaks nothing, and
output goes through Agg (or the SVG / PDF writers) whatever backend the user has chosen. Each variant keeps one
colour in every figure (learning curves of many variants grey out all but the few they highlight, and say so).

What a figure shows - which variants a learning curve highlights, whether task weights need a log axis, whether a
figure is worth drawing at all, where the trade-off labels go, how far an axis reaches - is decided by small pure
functions here and in :mod:`mtlab.report.layout`, which the tests call directly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mtlab.pages.figures import STYLE, WIDTH, SavedFigure, SkippedFigure, remove_stale, save_figure
from mtlab.report.dynamics import conflict_curves, conflict_heatmap, weight_curves, weight_note
from mtlab.report.layout import (
    dot_axis_limits,
    few_values_sentence,
    highlighted_variants,
    wrap_title,
)
from mtlab.report.tables import StudyData, best_variant, ranked, representative_run, variant_label
from mtlab.report.tradeoff import axis_title, numeric_axes, sweep_figure, tradeoff_figure
from mtlab.report.units import decimals, is_fraction, label, phrase, scale

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

ANNOTATE_UP_TO = 12  # confusion matrices with more classes get colours only, no counts
CONFUSION_TITLE_SIZE = 10  # points


def make_figures(
    study: StudyData, summary: pd.DataFrame, out_dir: Path, fmt: str = "png"
) -> list[SavedFigure | SkippedFigure]:
    """Draw every figure the study's data allows and save it under ``out_dir`` as ``fmt`` (see
    :data:`~mtlab.report.FIGURE_FORMATS`); figures without data are left out, figures that would show nothing (every
    value equal) are replaced by a sentence that says so."""
    from matplotlib import rc_context

    out_dir.mkdir(parents=True, exist_ok=True)
    colors = variant_colors(study.variants)
    shown_figures: list[SavedFigure | SkippedFigure] = []

    def save(fig: Figure | None, name: str, title: str, caption: str) -> None:
        if fig is None:
            return
        shown_figures.append(save_figure(fig, out_dir / f"{name}.{fmt}", title, caption, fmt))

    primaries = primary_words(study)
    with rc_context(STYLE):
        for task in study.tasks:
            trained = best_first(study, summary, task)
            highlight = highlighted_variants(trained, study.control_variants)
            crowded = ""
            if highlight is not None:
                top = len([v for v in highlight if v not in study.control_variants])
                crowded = (
                    f" With {len(trained)} variants, only the best {top} on mean test "
                    f"{phrase(study.primary(task))} and the control(s) are in colour (this figure's own colours, so "
                    "that they are told apart), the other variants in grey without bands."
                )
            save(
                learning_curves(study, task, colors, highlight),
                f"learning-curves-{_slug(task)}",
                f"Learning curves: {task}",
                f"{phrase(study.primary(task)).capitalize()} on task {task} per epoch (its primary metric). Line: "
                "mean over seeds; band: min–max over seeds (only where two or more runs reached that epoch; runs "
                "stopped early end sooner)." + crowded,
            )
        save(
            accuracy_dots(study, summary, colors),
            "test-accuracy",
            "Test accuracy" if primaries == "accuracy" else "Test results",
            f"Mean test {primaries} per variant and task (large dot) with its 95% Student-t confidence interval "
            "(line); small dots are single seeds (↑ higher is better, ↓ lower is better). Dots mark values by "
            "position, not length, so the axis spans the data rather than starting at 0; it is at least 5 percentage "
            "points wide for percentages (5% of the values otherwise), so small differences look small.",
        )
        shown = confusion_variants(study, summary)
        save(
            confusion_figure(study, shown),
            "confusion",
            "Confusion matrices",
            "Test confusion matrices of the classification tasks, for one representative run per variant (the seed "
            f"whose {primaries} is closest to the variant's median), for " + " and ".join(shown) + ". Colour: "
            "fraction of the true class (row); numbers: counts.",
        )
        save(
            tradeoff_figure(study, colors),
            "trade-off",
            "Trade-off between tasks",
            f"Test {primaries} of one task against another, oriented so that better is up and to the right (an "
            "axis of a lower-is-better metric is inverted, and says so): a large dot per variant (mean over seeds) "
            "with 95% Student-t whiskers on both axes, its seeds as faint dots; dotted lines are variants that train "
            "one of the two tasks alone; the dashed line joins the non-dominated variants (no other variant is at "
            "least as good on both tasks and better on one), which are labelled; the thick grey line is the static "
            "scalarisation front, the non-dominated variants trained with fixed loss weights.",
        )
        for axis, values in numeric_axes(study).items():
            save(
                sweep_figure(study, axis, values, colors),
                f"sweep-{_slug(axis)}",
                f"Sweep: {axis_title(axis, values)}",
                f"Test {primaries} per task against the grid axis {axis}: mean over seeds with its 95% Student-t "
                "band, one line per value of the other labels (↑ higher is better, ↓ lower is better).",
            )
        save(
            conflict_curves(study, colors),
            "gradient-conflict",
            "Task-gradient conflict",
            "Cosine similarity of the task gradients on the shared parameters (train.diagnostics), mean over the "
            "epoch's measured steps; line: mean over seeds, band: min–max over seeds (drawn for up to 6 variants). "
            "Below 0 the tasks pull the shared parameters in conflicting directions.",
        )
        save(
            conflict_heatmap(study),
            "gradient-conflict-pairs",
            "Task-gradient conflict per task pair",
            "Gradient cosine per variant and task pair, averaged over epochs and seeds; in brackets the fraction of "
            "measured steps with a negative cosine.",
        )
        same_weights = weight_note(study)
        if same_weights:
            shown_figures.append(SkippedFigure("Task weights", same_weights))
        else:
            weights, yscale = weight_curves(study, colors)
            save(
                weights,
                "task-weights",
                "Task weights",
                "The weight each task's loss got per epoch (mean over the epoch's steps; for gradient-based methods "
                "the weight of the task's gradient in the update, times loss.weights): line: mean over seeds, band: "
                "min–max (drawn for up to 6 variants)."
                + ("" if yscale == "linear" else f" Log axis ({yscale}): the weights span more than 10x."),
            )
        sizes = summary[summary["parameters"].notna()]
        same_sizes = few_values_sentence(
            [variant_label(r) for r in sizes.to_dict("records")], list(sizes["parameters"]), "trainable parameters"
        )
        if same_sizes:
            shown_figures.append(SkippedFigure("Parameters", same_sizes))
        else:
            save(
                parameter_bars(study, summary, colors),
                "parameters",
                "Parameters",
                "Trainable parameters per variant (every task's heads included).",
            )
    remove_stale(out_dir, [f for f in shown_figures if isinstance(f, SavedFigure)])
    return shown_figures


def best_first(study: StudyData, summary: pd.DataFrame, task: str) -> list[str]:
    """The variants that trained ``task`` (a test result on it), best first on its primary mean test metric by its
    direction: the ranked variants (two or more finished runs, see :func:`~mtlab.report.tables.ranked`) before the
    rest, study order among equals."""
    metric, higher = study.measure[task]
    column = f"{task}.{metric}.mean"
    trusted = set(ranked(summary)["variant"])
    order = {v: i for i, v in enumerate(study.variants)}
    means = dict(zip(summary["variant"], summary[column], strict=True))

    def key(variant: str) -> tuple:
        mean = means[variant]
        return (variant not in trusted, -mean if higher else mean, order[variant])

    return sorted((v for v in study.variants if np.isfinite(means.get(v, np.nan))), key=key)


def primary_words(study: StudyData) -> str:
    """The tasks' primary metrics in words for captions: ``accuracy``, or ``accuracy (item) and MAE (age)``."""
    metrics = {t: study.primary(t) for t in study.tasks}
    if len(set(metrics.values())) <= 1:
        return phrase(next(iter(metrics.values()), "acc"))
    by_metric: dict[str, list[str]] = {}
    for task, metric in metrics.items():
        by_metric.setdefault(metric, []).append(task)
    return " and ".join(f"{phrase(m)} ({', '.join(ts)})" for m, ts in by_metric.items())


def variant_colors(variants: list[str]) -> dict[str, tuple[float, ...]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(variants) <= 10 else "tab20"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(variants)}


def confusion_variants(study: StudyData, summary: pd.DataFrame) -> list[str]:
    """The best variant and the control(s) it is compared with, best first."""
    best = best_variant(study, summary)
    if best is None:
        return []
    controls = list(dict.fromkeys(study.controls.get(best, {}).values()))
    if not controls and study.control_variants:
        controls = study.control_variants[:1]
    return [best, *(c for c in controls if c != best)]


# ---------------------------------------------------------------------------------------------------- figures


def learning_curves(study: StudyData, task: str, colors: dict, highlight: list[str] | None = None) -> Figure | None:
    """Train and validation values of ``task``'s primary metric per epoch, one line (mean) and band (min-max) per
    variant. With ``highlight`` (see :func:`~mtlab.report.layout.highlighted_variants`), only those variants are in
    colour - distinct ones, from a palette of this figure - and the others thin grey lines without bands."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    history = study.history
    metric, higher = study.measure[task]
    factor = scale(metric)
    keys = [(s, f"{s}.{task}.{metric}") for s in ("train", "val")]
    panels = [(s, key) for s, key in keys if (history["metric"] == key).any()]
    if not panels:
        return None
    if highlight is not None:
        palette = colormaps["tab10"]
        colors = {v: palette(i % palette.N) for i, v in enumerate(highlight)}
    background = [] if highlight is None else [v for v in study.variants if v not in highlight]
    fig = Figure(figsize=(WIDTH, 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (split, key) in zip(axes, panels, strict=True):
        rows = history[history["metric"] == key]
        for i, variant in enumerate(background):  # grey first, so the coloured lines are drawn over them
            per_epoch = rows[rows["variant"] == variant].groupby("epoch")["value"].mean()
            if len(per_epoch):
                ax.plot(per_epoch.index.to_numpy(), factor * per_epoch.to_numpy(), color="#b0b0b0", lw=0.9,
                        alpha=0.8, zorder=1, label=f"other variants ({len(background)})" if i == 0 else None)
        for variant in highlight if highlight is not None else study.variants:
            per_epoch = rows[rows["variant"] == variant].groupby("epoch")["value"].agg(["mean", "min", "max", "count"])
            if per_epoch.empty:
                continue
            x = per_epoch.index.to_numpy()
            ax.plot(
                x,
                factor * per_epoch["mean"],
                color=colors[variant],
                lw=2,
                label=variant + (" (control)" if variant in study.control_variants else ""),
                marker="o" if len(x) <= 12 else None,
                markersize=3.5,
                zorder=3,
            )
            band = per_epoch["count"] > 1
            if band.any():
                ax.fill_between(
                    x[band],
                    factor * per_epoch["min"][band],
                    factor * per_epoch["max"][band],
                    color=colors[variant],
                    alpha=0.15,
                    lw=0,
                    zorder=2,
                )
        ax.set_title({"train": "Training", "val": "Validation"}[split] + f" {phrase(metric)} — {task}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel(label(metric, higher))
    handles, labels = axes[0].get_legend_handles_labels()
    if highlight is not None:  # the coloured variants first, the grey entry last
        order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("other variants"))
        handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4))
    return fig


def accuracy_dots(study: StudyData, summary: pd.DataFrame, colors: dict) -> Figure | None:
    """Each task's primary test metric per variant as a dot (mean over seeds) with its 95% Student-t interval as a
    line and the seeds as small dots, one panel per task (fractions in percent; the axis label gives the
    direction). The axis spans the data (:func:`~mtlab.report.layout.dot_axis_limits`): a dot's position, not a
    bar's length, carries the value, so no zoomed bars suggest ratios that are not there."""
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    shown = summary[summary["done"] > 0].reset_index(drop=True)
    tasks = [t for t in study.tasks if shown[f"{t}.{study.primary(t)}.mean"].notna().any()]
    if shown.empty or not tasks:
        return None
    y = np.arange(len(shown))
    fig = Figure(figsize=(WIDTH, 0.42 * len(shown) + 1.3), layout="constrained")
    axes = fig.subplots(1, len(tasks), sharey=True, squeeze=False)[0]
    test = study.metrics[study.metrics["split"] == "test"]
    spans: list[tuple] = []  # (panel, data span, label column width in inches)
    for ax, task in zip(axes, tasks, strict=True):
        metric, higher = study.measure[task]
        factor = scale(metric)
        mean = factor * shown[f"{task}.{metric}.mean"].to_numpy()
        low = factor * shown[f"{task}.{metric}.ci_low"].to_numpy()
        high = factor * shown[f"{task}.{metric}.ci_high"].to_numpy()
        mine = test[(test["task"] == task) & (test["metric"] == metric)]
        seeds = [factor * mine.loc[mine["variant"] == v, "value"].to_numpy() for v in shown["variant"]]
        ok = ~np.isnan(low)
        ax.hlines(y[ok], low[ok], high[ok], color=[colors[v] for v in shown["variant"][ok]], lw=2.2, zorder=2)
        for i, values in enumerate(seeds):
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(values, y[i] + jitter[: len(values)], s=10, color="#444", alpha=0.45, zorder=3, lw=0)
        ax.scatter(mean, y, s=60, color=[colors[v] for v in shown["variant"]], edgecolor="#222", lw=0.7, zorder=4)
        measured = np.concatenate([mean, *seeds])
        everything = np.concatenate([measured, low[ok], high[ok]])
        data_span = dot_axis_limits(everything, percent=is_fraction(metric), nonnegative=bool(np.nanmin(measured) >= 0))
        digits = decimals(metric, float(np.nanmax(np.abs(mean))) if np.isfinite(mean).any() else None)
        texts = [f"{m:.{digits}f}" if not np.isnan(m) else "" for m in mean]
        panel_inches = (WIDTH - 2.0) / len(tasks)  # the variant names take about 2 inches (corrected below)
        label_inches = max(map(len, texts)) * LABEL_CHAR_INCHES + 0.12
        _span_with_label_column(ax, data_span, label_inches / panel_inches)
        column = blended_transform_factory(ax.transAxes, ax.transData)
        for i, text in enumerate(texts):
            if text:  # the means as a column inside the panel's right end: read without hunting along the axis
                ax.text(0.985, y[i], text, transform=column, ha="right", va="center", fontsize=8.5)
        spans.append((ax, data_span, label_inches))
        ax.set_title(f"Test {phrase(metric)} — {task}")
        ax.set_xlabel(label(metric, higher) + ("" if higher else ", lower is better"))
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(y, [variant_label(r) for r in shown.to_dict("records")])
    axes[0].set_ylim(len(shown) - 0.5, -0.5)  # first variant on top
    fig.draw_without_rendering()  # the panels' widths, now known: the label columns made just wide enough
    for ax, data_span, label_inches in spans:
        _span_with_label_column(ax, data_span, label_inches / (ax.get_position().width * fig.get_figwidth()))
    return fig


LABEL_CHAR_INCHES = 0.6 * 8.5 / 72  # a digit's width at the value labels' 8.5 points


def _span_with_label_column(ax, data_span: tuple[float, float], share: float) -> None:
    """The x axis spans ``data_span`` and, right of it, a column for the value labels taking ``share`` of the
    panel (behind a thin rule; no ticks there), so the labels sit inside their own panel."""
    from matplotlib.ticker import MaxNLocator

    share = min(max(share + 0.03, 0.08), 0.5)
    lo, hi = data_span
    right = lo + (hi - lo) / (1 - share)
    for line in [line for line in ax.lines if line.get_gid() == "label-column"]:
        line.remove()
    ax.axvline(hi, color="#d0d0d0", lw=0.8, zorder=1, gid="label-column")
    ax.set_xlim(lo, right)
    ax.set_xticks([t for t in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi])


def confusion_figure(study: StudyData, variants: list[str]) -> Figure | None:
    """One row of confusion matrices (one per task) for the representative run of each variant."""
    from matplotlib.figure import Figure

    classified = {t for t in study.tasks if study.task(t).confusion}  # types with a confusion matrix
    runs = {v: representative_run(study, v) for v in variants}
    matrices = {  # {variant: {task: matrix}}
        v: {t: m for t, m in study.confusion(r).items() if t in classified} for v, r in runs.items() if r is not None
    }
    picked = [(v, runs[v]) for v in variants if matrices.get(v)]
    if not picked:
        return None
    tasks = [t for t in study.tasks if any(t in matrices[v] for v, _ in picked)]
    largest = max(len(m) for v, _ in picked for m in matrices[v].values())
    panel = 3.3 if largest <= ANNOTATE_UP_TO else 5.0
    width = min(WIDTH, panel * len(tasks) + 1.0)
    panel_width = (width - 1.0) / len(tasks)  # the colour bar takes about an inch
    fig = Figure(figsize=(width, (panel + 0.4) * len(picked)), layout="constrained")
    axes = fig.subplots(len(picked), len(tasks), squeeze=False)
    image = None
    seed_of = study.runs.set_index("run_id")["seed"]
    for row, (variant, run) in zip(axes, picked, strict=True):
        for ax, task in zip(row, tasks, strict=True):
            matrix = np.asarray(matrices[variant].get(task, []), dtype=float)
            if matrix.size == 0:
                ax.axis("off")
                continue
            image = _draw_confusion(ax, matrix)
            accuracy = 100 * np.trace(matrix) / max(matrix.sum(), 1)
            title = f"{variant}\n{task} · seed {seed_of[run]} · accuracy {accuracy:.2f}%"
            ax.set_title(wrap_title(title, panel_width, CONFUSION_TITLE_SIZE), fontsize=CONFUSION_TITLE_SIZE)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="fraction of the true class")
    return fig


def parameter_bars(study: StudyData, summary: pd.DataFrame, colors: dict) -> Figure | None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    shown = summary[summary["parameters"].notna()].reset_index(drop=True)
    if shown.empty:
        return None
    y = np.arange(len(shown))
    values = shown["parameters"].to_numpy()
    fig = Figure(figsize=(7.5, 0.45 * len(shown) + 1.1), layout="constrained")
    ax = fig.subplots()
    ax.barh(y, values, height=0.62, color=[colors[v] for v in shown["variant"]], alpha=0.85, zorder=2)
    if values.max() / max(values.min(), 1) > 100:
        ax.set_xscale("log")
    for i, v in enumerate(values):
        ax.text(v, y[i], f"  {int(v):,}", va="center", fontsize=9)
    ax.set_xlim(right=values.max() * (3 if ax.get_xscale() == "log" else 1.2))
    ax.set_yticks(y, [variant_label(r) for r in shown.to_dict("records")])
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
    ax.set_xlabel("trainable parameters")
    ax.set_title("Model size per variant")
    ax.grid(axis="y", visible=False)
    return fig


# -------------------------------------------------------------------------------------------------- internals


def _draw_confusion(ax, matrix: np.ndarray):
    """Row-normalised colours (recall per true class) so rare classes are as visible as common ones."""
    k = len(matrix)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.grid(False)
    step = 1 if k <= ANNOTATE_UP_TO else 5 if k <= 50 else 10
    ax.set_xticks(range(0, k, step))
    ax.set_yticks(range(0, k, step))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= ANNOTATE_UP_TO:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{int(matrix[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=8 if k > 6 else 10,
                        color="white" if rates[i, j] > 0.55 else "#222",
                    )
    return image


def _compact(value: float) -> str:
    """1500 -> '1.5k', 2000000 -> '2M': axis ticks without matplotlib's detached '1e6' offset label."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "task"
