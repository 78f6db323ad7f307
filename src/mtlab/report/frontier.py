"""Trade-offs beyond a table, for two and three tasks: the hypervolume of each variant's test results and the
static scalarisation front every adaptive method is judged against.

* **Hypervolume** (Zitzler & Thiele, 1998): the volume of objective space a set of points dominates, up to a
  reference point. Exact here for 2 and 3 objectives (a sweep in 2-D; slices along the third axis in 3-D), with
  every coordinate oriented so that higher is better (a lower-is-better metric is negated first).
* **Static scalarisation front** (Xin et al., NeurIPS 2022, "Do current multi-task optimization methods in deep
  learning even help?"): ``fixed`` trained at weights on a grid over the simplex traces the front plain weighted
  sums reach; an adaptive method helps only where its point lies beyond that front. The variants of a study whose
  runs all use ``loss.method: fixed`` form it.

The reference point is stated with the numbers: per task, the worst variant mean pushed back by a tenth of the
spread of the variant means (so every variant, the worst included, adds some volume).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mtlab.report.stats import t_interval
from mtlab.report.tables import Cell, StudyData, Table
from mtlab.report.tradeoff import pareto_front, static_variants, test_primary_per_run
from mtlab.report.units import format_value

MARGIN = 0.1
"""The reference point sits this fraction of the variant means' spread behind the worst mean, per task."""


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact hypervolume of ``points`` (n, d), d in {1, 2, 3}, every coordinate to maximise, above ``reference``
    (d,). Points not better than the reference on every coordinate add nothing."""
    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    reference = np.asarray(reference, dtype=float)
    points = points[(points > reference).all(axis=1)] - reference  # shifted: the reference at the origin
    if len(points) == 0:
        return 0.0
    d = points.shape[1]
    if d == 1:
        return float(points.max())
    if d == 2:
        return _area(points)
    if d == 3:  # slices between successive heights: the 2-D area of the points at least that high
        heights = np.unique(points[:, 2])[::-1]  # descending
        volume = 0.0
        for top, below in zip(heights, [*heights[1:], 0.0], strict=True):
            volume += _area(points[points[:, 2] >= top][:, :2]) * (top - below)
        return float(volume)
    raise ValueError(f"hypervolume: exact for 1 to 3 objectives, got {d}")


def _area(points: np.ndarray) -> float:
    """Area dominated by 2-D points (n, 2) above the origin: a sweep from the largest x down."""
    order = np.argsort(-points[:, 0], kind="stable")
    area, best_y = 0.0, 0.0
    for x, y in points[order]:
        if y > best_y:
            area += x * (y - best_y)
            best_y = y
    return float(area)


def frontier_frame(study: StudyData) -> tuple[pd.DataFrame, dict[str, float]] | None:
    """Per variant that trains all of the study's 2 or 3 tasks: its hypervolume (mean over seeds with 95% interval,
    and of its mean point), whether it belongs to the static sweep, and the volume it adds to the static front;
    and the reference point (per task, in the stored metric's units). None for other numbers of tasks."""
    tasks = list(study.tasks)
    if not 2 <= len(tasks) <= 3:
        return None
    per_run = test_primary_per_run(study)
    if per_run.empty or not all(t in per_run for t in tasks):
        return None
    per_run = per_run.dropna(subset=tasks)
    if per_run.empty:
        return None
    sign = np.array([1.0 if study.measure[t][1] else -1.0 for t in tasks])  # orient: higher is better
    means = per_run.groupby("variant", sort=False)[tasks].mean()
    means = means.loc[[v for v in study.variants if v in means.index]]
    oriented = means.to_numpy() * sign
    worst, best = oriented.min(axis=0), oriented.max(axis=0)
    spread = np.where(best > worst, best - worst, np.maximum(np.abs(worst), 1.0) * 1e-3)
    reference = worst - MARGIN * spread
    static = [v for v in static_variants(study) if v in means.index]
    static_points = means.loc[static].to_numpy() * sign if static else np.zeros((0, len(tasks)))
    static_volume = hypervolume(static_points, reference) if static else math.nan
    on_front = set(means.index[pareto_front(oriented)])
    rows = []
    for variant, point in zip(means.index, oriented, strict=True):
        seeds = per_run[per_run["variant"] == variant][tasks].to_numpy() * sign
        volumes = np.array([hypervolume(p[None], reference) for p in seeds])
        low, high = t_interval(volumes)
        added = math.nan
        if static:  # the volume this point adds to the static front's
            added = hypervolume(np.vstack([static_points, point[None]]), reference) - static_volume
        rows.append({
            "variant": variant, "n": len(volumes), "hv": float(volumes.mean()), "low": low, "high": high,
            "hv_of_mean": hypervolume(point[None], reference), "static": variant in static,
            "non_dominated": variant in on_front, "adds_to_static": added,
        })
    reference_values = {t: float(r * s) for t, r, s in zip(tasks, reference, sign, strict=True)}
    frame = pd.DataFrame(rows)
    frame.attrs["static_hv"] = static_volume
    return frame, reference_values


def frontier_table(study: StudyData) -> tuple[Table, str] | None:
    """The trade-off section's table and the sentence stating its reference point (None: not 2 or 3 tasks, or
    no variant trains them all)."""
    found = frontier_frame(study)
    if found is None:
        return None
    frame, reference = found
    static_hv = frame.attrs["static_hv"]

    def number(x: float) -> str:
        return "–" if x is None or math.isnan(x) else f"{x:.4g}"

    rows = []
    for r in frame.to_dict("records"):
        added = r["adds_to_static"]
        if r["static"]:
            verdict, added = "static sweep", math.nan  # a point of the front adds nothing to it by construction
        elif math.isnan(added):
            verdict = "–"
        else:
            verdict = "beyond the static front" if added > 0 else "not beyond the static front"
        interval = "" if math.isnan(r["low"]) else f"[{number(r['low'])}, {number(r['high'])}]"
        rows.append([
            Cell(r["variant"], kind="text", strong=bool(r["non_dominated"])), Cell(str(r["n"])),
            Cell(number(r["hv"]), interval), Cell(number(r["hv_of_mean"])), Cell(number(added)),
            Cell(verdict, kind="text"),
        ])
    tasks = list(reference)
    where = ", ".join(
        f"{t} test {study.primary(t)} {format_value(study.primary(t), v, with_unit=True)} "
        f"({'higher' if study.measure[t][1] else 'lower'} is better)"
        for t, v in reference.items()
    )
    text = (
        f"Hypervolume of each variant's test {' and '.join(dict.fromkeys(study.primary(t) for t in tasks))} on "
        f"{' and '.join(tasks)}: the volume its point dominates up to the reference point {where} - per task the "
        f"worst variant mean, pushed back by {MARGIN:g} of the spread of the means (stored units; a lower-is-better "
        "metric counts downwards; a seed not beyond the reference on every task counts 0). Larger is better. "
        "The static front is the non-dominated set of the variants that train "
        "with fixed loss weights (a weighted-sum sweep, Xin et al. 2022)"
        + (f", whose hypervolume is {number(static_hv)}" if not math.isnan(static_hv) else ": this study has none")
        + "; an adaptive method helps where it adds volume to it. The verdicts read the mean points and are not a "
        "test: the hypervolumes' intervals over seeds say how far to trust them."
    )
    table = Table(
        ["Variant", "n", "Hypervolume (mean over seeds, 95% CI)", "Hypervolume of the mean", "Adds to the static front",
         "Against the static front"],
        rows,
        "Bold: non-dominated variant means (no other variant at least as good on every task and better on one).",
    )
    return table, text
