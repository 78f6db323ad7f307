"""Figures of what happened during training besides accuracy: task-gradient conflict
(``grad.<a>~<b>.cos_mean``, recorded with ``train.diagnostics``) and the weight a method gave each task
(``train.<task>.weight``), per epoch, one line per variant with a band over seeds."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np

from mtlab.report.layout import fixed_weights_sentence, weight_axis_scale
from mtlab.report.tables import StudyData

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH = 11.0
BANDS_UP_TO = 6  # variants; with more, overlapping seed bands hide the lines
PAIR_METRIC = re.compile(r"^grad\.(?P<a>[^.~]+)~(?P<b>[^.~]+)\.cos_mean$")


def conflict_pairs(study: StudyData) -> list[tuple[str, str]]:
    """Task pairs with recorded whole-model cosines, in the order they were recorded."""
    found = [PAIR_METRIC.match(m) for m in dict.fromkeys(study.history["metric"])]
    return [(m["a"], m["b"]) for m in found if m]


def _per_epoch_panels(study: StudyData, keys: list[tuple[str, str]], colors: dict, ylabel: str, scale: float = 1.0,
                      zero_line: bool = False, yscale: str = "linear") -> Figure | None:
    """One panel per (title, metric): mean over seeds per epoch and variant, min-max band where 2+ seeds (for
    studies of up to ``BANDS_UP_TO`` variants)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    history = study.history
    panels = [(title, key) for title, key in keys if (history["metric"] == key).any()]
    if not panels:
        return None
    columns = min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(WIDTH, 3.5 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True).flatten()
    for ax in axes[len(panels) :]:
        ax.axis("off")
    for ax, (title, key) in zip(axes, panels, strict=False):
        rows_ = history[history["metric"] == key]
        for variant in study.variants:
            mine = rows_[rows_["variant"] == variant]
            per_epoch = mine.groupby("epoch")["value"].agg(["mean", "min", "max", "count"])
            if per_epoch.empty:
                continue
            x = per_epoch.index.to_numpy()
            ax.plot(x, scale * per_epoch["mean"], color=colors[variant], lw=1.8, label=variant,
                    marker="o" if len(x) <= 12 else None, markersize=3)
            band = (per_epoch["count"] > 1).to_numpy()
            if band.any() and len(study.variants) <= BANDS_UP_TO:
                ax.fill_between(x[band], scale * per_epoch["min"][band], scale * per_epoch["max"][band],
                                color=colors[variant], alpha=0.12, lw=0)
        if zero_line:
            ax.axhline(0, color="#222", lw=0.8, zorder=1)
        if yscale != "linear":
            ax.set_yscale(yscale, **({"linthresh": _smallest_positive(history, panels)} if yscale == "symlog" else {}))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[::columns]:
        ax.set_ylabel(ylabel)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8)
    return fig


def conflict_curves(study: StudyData, colors: dict) -> Figure | None:
    """Mean cosine of each task pair's gradients on the shared parameters, per epoch and variant."""
    keys = [(f"{a} vs {b}", f"grad.{a}~{b}.cos_mean") for a, b in conflict_pairs(study)]
    return _per_epoch_panels(study, keys, colors, "gradient cosine", zero_line=True)


def conflict_heatmap(study: StudyData) -> Figure | None:
    """Variants x task pairs: the cosine averaged over epochs and seeds (colour) and the fraction of measured steps
    in conflict (cos < 0, in the cell's text); drawn when there are more than two tasks (three or more pairs)."""
    from matplotlib.figure import Figure

    pairs = conflict_pairs(study)
    if len(pairs) < 3:
        return None
    history = study.history
    variants = [v for v in study.variants if (history[history["variant"] == v]["metric"].str.startswith("grad.")).any()]
    if not variants:
        return None
    cos = np.full((len(variants), len(pairs)), np.nan)
    conflict = np.full_like(cos, np.nan)
    for i, variant in enumerate(variants):
        mine = history[history["variant"] == variant]
        for j, (a, b) in enumerate(pairs):
            cos[i, j] = mine.loc[mine["metric"] == f"grad.{a}~{b}.cos_mean", "value"].mean()
            conflict[i, j] = mine.loc[mine["metric"] == f"grad.{a}~{b}.conflict", "value"].mean()
    fig = Figure(figsize=(min(WIDTH, 2.2 * len(pairs) + 3.5), 0.38 * len(variants) + 1.6), layout="constrained")
    ax = fig.subplots()
    limit = max(float(np.nanmax(np.abs(cos))), 0.05) if np.isfinite(cos).any() else 1.0
    image = ax.imshow(cos, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(len(pairs)), [f"{a} vs {b}" for a, b in pairs])
    ax.set_yticks(range(len(variants)), variants)
    for i in range(len(variants)):
        for j in range(len(pairs)):
            if np.isfinite(cos[i, j]):
                ax.text(j, i, f"{cos[i, j]:+.2f} ({100 * conflict[i, j]:.0f}%)", ha="center", va="center",
                        fontsize=8, color="white" if abs(cos[i, j]) > 0.6 * limit else "#222")
    ax.set_title("Gradient cosine per task pair (conflicting steps in brackets)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="mean cosine")
    return fig


def weight_keys(study: StudyData) -> list[tuple[str, str]]:
    return [(f"Weight of {t}", f"train.{t}.weight") for t in study.tasks]


def weight_values(study: StudyData) -> np.ndarray:
    """Every recorded task weight (all tasks, variants, runs and epochs)."""
    history = study.history
    keys = [key for _, key in weight_keys(study)]
    return history.loc[history["metric"].isin(keys), "value"].to_numpy(dtype=float)


def weight_note(study: StudyData) -> str | None:
    """A sentence instead of the task-weight figure when no variant's weight of any task ever changed (fixed
    weights: flat lines show nothing a sentence cannot say); ``None`` when the figure shows something or has no
    data."""
    history = study.history
    series = {}
    for task in study.tasks:
        rows = history[history["metric"] == f"train.{task}.weight"]
        series[task] = {v: values.to_numpy(dtype=float) for v, values in rows.groupby("variant", sort=False)["value"]}
    return fixed_weights_sentence(series)


def weight_curves(study: StudyData, colors: dict) -> tuple[Figure | None, str]:
    """The weight each task's loss effectively got (mean over the epoch's steps), per epoch and variant, and the
    y scale it is drawn on (log when the weights span more than 10x: :func:`~mtlab.report.layout.weight_axis_scale`)."""
    yscale = weight_axis_scale(weight_values(study))
    return _per_epoch_panels(study, weight_keys(study), colors, "task weight", yscale=yscale), yscale


def _smallest_positive(history, panels: list[tuple[str, str]]) -> float:
    """The linear range of a symlog axis: up to the smallest positive value drawn."""
    values = history.loc[history["metric"].isin([key for _, key in panels]), "value"].to_numpy(dtype=float)
    positive = values[values > 0]
    return float(positive.min()) if len(positive) else 1.0
