"""Statistics over seeds, computed from the results store (never from printed text).

Every function scores each task by one metric and knows which way is better: a *measure* maps each task to
``(metric, higher_is_better)`` - the task's primary metric and its direction, as the task's type declares them
(:class:`mtlab.study.store.TaskInfo`): ``acc`` higher is better, ``mae`` lower. Without a measure every task is
scored by accuracy, higher is better (what every store held before typed tasks).

* :func:`summarize`: per variant and task, n, mean, sample std, 95% Student-t confidence interval, min and max.
* :func:`compare`: each variant against its control over the seeds both have (paired t-test and Wilcoxon
  signed-rank test, two-sided; p-values reported as numbers), with whether the variant is better by the metric's
  direction and its verdict at the Holm-adjusted level. The t-test is undefined, and left out of the Holm family,
  with fewer than two pairs, when the two are identical on every seed, or when the difference is the same on every
  seed (:func:`undefined_test`; "identical" and "the same" within :data:`IDENTICAL_TOLERANCE`).
* :func:`delta_m`: the multi-task summary of Maninis et al. (2019), as used by Vandenhende et al. (2021) and
  Nash-MTL: ``delta_m = 100 / T * sum_t (-1)^l_t (M_t - M_control_t) / |M_control_t|`` with ``l_t = 0`` for
  higher-is-better metrics (accuracy, R²) and 1 for lower-is-better ones (loss, MAE, RMSE), so a positive delta_m
  is better - the flat mean over the tasks' metrics (LibMTL first averages within each task; with one metric per
  task, as here, the two coincide) - with a 95% seed-paired percentile bootstrap interval
  (:func:`delta_m_interval`), point and interval over the same seeds: those the variant and its controls share.
  The denominator is the control's magnitude: the published formula for the positive
  metrics it was written for, and still signed by direction for a metric that can be negative (R²).
* :func:`holm`: Holm's (1979) step-down adjustment of a family of p-values; :func:`effect_size`: Cohen's d_z of
  paired differences (mean difference / sd of differences).
* :func:`rank_variants`: mean rank over tasks and seeds (better by each task's direction), and wins / ties /
  losses against the control at the adjusted level.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

Measure = Mapping[str, tuple[str, bool]]
"""Task -> (metric, higher_is_better): the metric each task is scored by and which way is better."""
DEFAULT_METRIC = ("acc", True)
"""What a task is scored by when no measure is given: accuracy, higher is better."""
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 12  # fixed: the same store gives the same interval on every rebuild of the report
ALPHA = 0.05
IDENTICAL_TOLERANCE = 1e-12
"""Paired differences within this of 0 count as zero (variant and control identical), differences within this of
each other as the same on every seed (no spread: the t-test is undefined). Absolute, in the metric's units, because
the question is float rounding: a difference of two float64 values of magnitude up to ~1000 is exact to 2.3e-13
(one ulp of 1000 is 1.1e-13), while a real difference of a metric is orders larger - an accuracy on a million test
examples moves in steps of 1e-6, and metrics computed in float32 are 6e-8 apart near 1. A relative tolerance
(np.allclose: 1e-5 of the value) would call a real difference of 1e-6 on an accuracy of 0.99 identical."""


def same_measure(tasks: Iterable[str], metric: str, higher_is_better: bool) -> dict[str, tuple[str, bool]]:
    """One metric and direction for every task in ``tasks`` (e.g. the loss of every task, lower is better)."""
    return {task: (metric, higher_is_better) for task in tasks}


def _values(metrics: pd.DataFrame, split: str, measure: Measure | str | None) -> pd.DataFrame:
    """The per-run values each task is scored by: run_id, variant, seed, task, metric, value, higher (bool; None
    when ``measure`` is a bare metric name, which says nothing about direction)."""
    rows = metrics[(metrics["split"] == split) & (metrics["task"] != "")]
    if measure is None or isinstance(measure, str):
        rows = rows[rows["metric"] == (measure or DEFAULT_METRIC[0])]
        higher = DEFAULT_METRIC[1] if measure is None else None
        return rows[["run_id", "variant", "seed", "task", "metric", "value"]].assign(higher=higher)
    wanted = rows["task"].map(lambda t: measure[t][0] if t in measure else None)
    rows = rows[rows["metric"] == wanted]
    rows = rows[["run_id", "variant", "seed", "task", "metric", "value"]]
    return rows.assign(higher=rows["task"].map(lambda t: bool(measure[t][1])).astype(bool))


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t interval for the mean; NaN for fewer than two values."""
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))
    return (mean - half, mean + half)


def summarize(metrics: pd.DataFrame, split: str = "test", measure: Measure | str | None = None) -> pd.DataFrame:
    """One row per (variant, task): metric, n, mean, std (ddof 1), ci_low, ci_high, min, max. Variants keep store
    order. ``measure``: each task's metric (a measure), or one metric name for every task (e.g. ``"loss"``)."""
    rows = []
    values = _values(metrics, split, measure)
    for (variant, task), group in values.groupby(["variant", "task"], sort=False):
        v = group["value"].to_numpy()
        low, high = t_interval(v)
        rows.append(
            {
                "variant": variant,
                "task": task,
                "metric": group["metric"].iloc[0],
                "n": len(v),
                "mean": float(v.mean()),
                "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                "ci_low": low,
                "ci_high": high,
                "min": float(v.min()),
                "max": float(v.max()),
            }
        )
    columns = ["variant", "task", "metric", "n", "mean", "std", "ci_low", "ci_high", "min", "max"]
    return pd.DataFrame(rows, columns=columns)


def compare(
    metrics: pd.DataFrame, controls: dict[str, dict[str, str]], split: str = "test", measure: Measure | None = None
) -> pd.DataFrame:
    """Paired comparison of each variant with its control per task, over the seeds both finished.

    ``diff_mean`` (and its interval) is the variant minus the control in the metric's units, whatever its
    direction (``control_mean``: the control's mean over the paired seeds); ``better`` says whether that mean
    difference goes the good way (higher, or lower for a lower-is-better metric), ``verdict`` whether it is a
    ``win``, ``loss`` or ``tie`` at the Holm-adjusted level. ``undefined`` says why the paired t-test is undefined
    ('' when it is defined, see :func:`undefined_test`): its p, Holm p and effect size are then NaN, it is not in
    the Holm family, and its verdict is a tie."""
    values = _values(metrics, split, measure)
    table = values.pivot_table(index=["variant", "task"], columns="seed", values="value", aggfunc="first")
    scored = values.drop_duplicates("task").set_index("task")
    rows = []
    for variant, per_task in controls.items():
        for task, control in per_task.items():
            if (variant, task) not in table.index or (control, task) not in table.index:
                continue
            a, b = table.loc[(variant, task)], table.loc[(control, task)]
            both = a.notna() & b.notna()
            diff = (a[both] - b[both]).to_numpy()
            low, high = t_interval(diff)
            rows.append(
                {
                    "variant": variant,
                    "task": task,
                    "control": control,
                    "metric": scored.loc[task, "metric"],
                    "higher_is_better": bool(scored.loc[task, "higher"]),
                    "n_pairs": len(diff),
                    "control_mean": float(b[both].mean()) if len(diff) else math.nan,
                    "diff_mean": float(diff.mean()) if len(diff) else math.nan,
                    "diff_ci_low": low,
                    "diff_ci_high": high,
                    "effect_size": effect_size(diff),
                    "t_p": paired_t_p(diff),
                    "wilcoxon_p": _wilcoxon(diff),
                    "undefined": undefined_test(diff),
                }
            )
    columns = [
        "variant", "task", "control", "metric", "higher_is_better", "n_pairs", "control_mean", "diff_mean",
        "diff_ci_low", "diff_ci_high", "effect_size", "t_p", "wilcoxon_p", "undefined", "holm_p", "better", "verdict",
    ]
    frame = pd.DataFrame(rows, columns=columns[:-3])
    frame["holm_p"] = holm(frame["t_p"].to_numpy(dtype=float)) if len(frame) else []
    frame["better"] = [
        is_better(d, h) for d, h in zip(frame["diff_mean"], frame["higher_is_better"], strict=True)
    ]
    frame["verdict"] = [
        verdict(d, p, higher_is_better=h)
        for d, p, h in zip(frame["diff_mean"], frame["holm_p"], frame["higher_is_better"], strict=True)
    ]
    return frame[columns]


def delta_m(
    metrics: pd.DataFrame, controls: dict[str, dict[str, str]], split: str = "test", measure: Measure | None = None
) -> pd.DataFrame:
    """Per variant: delta_m in percent (positive: better) over the tasks that have a control, how many tasks that
    is, and its 95% seed-paired bootstrap interval (``ci_low``, ``ci_high``, NaN below two paired seeds), both over
    the same ``n_seeds`` seeds: those on which the variant and every one of its tasks' controls finished.

    Point and interval use the same seeds, so the point is the statistic the interval resamples. (Taking each side's
    mean over all its own finished seeds instead compares different seeds: with a control that finished seeds 0-4
    and a variant 0-2, a control's poor seeds 3 and 4 alone can make the variant look better, far outside an
    interval that can only resample the shared seeds.) A variant that shares no seed with its controls has a NaN
    delta_m (``n_seeds`` 0).
    """
    values = _values(metrics, split, measure)
    higher = values.drop_duplicates("task").set_index("task")["higher"]
    table = values.pivot_table(index=["variant", "task"], columns="seed", values="value", aggfunc="first")
    rows = []
    for variant, per_task in controls.items():
        pairs = [
            (task, control)
            for task, control in per_task.items()
            if (variant, task) in table.index and (control, task) in table.index
        ]
        if not pairs:
            continue
        rows_v = np.stack([table.loc[(variant, t)].to_numpy(dtype=float) for t, _ in pairs])  # (T, seeds)
        rows_c = np.stack([table.loc[(c, t)].to_numpy(dtype=float) for t, c in pairs])
        paired = ~(np.isnan(rows_v).any(0) | np.isnan(rows_c).any(0))
        # A task whose control averages 0 over the paired seeds has no relative change (when there are any).
        keep = np.array([not paired.any() or rows_c[i, paired].mean() != 0 for i in range(len(pairs))])
        if not keep.any():
            continue
        pairs = [p for p, k in zip(pairs, keep, strict=True) if k]
        v, c = rows_v[keep][:, paired], rows_c[keep][:, paired]
        directions = np.array([bool(higher[t]) for t, _ in pairs])
        point = float(delta_m_point(v, c, directions)) if paired.any() else math.nan
        low, high = delta_m_interval(v, c, higher_is_better=directions)
        rows.append(
            {
                "variant": variant,
                "delta_m": point,
                "tasks": len(pairs),
                "ci_low": low,
                "ci_high": high,
                "n_seeds": int(paired.sum()),
            }
        )
    return pd.DataFrame(rows, columns=["variant", "delta_m", "tasks", "ci_low", "ci_high", "n_seeds"])


def _signs(higher_is_better: bool | Iterable[bool] | np.ndarray) -> np.ndarray:
    """+1 / -1 per task (or one for all): the sign that makes a change in the good direction positive."""
    return np.where(np.asarray(higher_is_better, dtype=bool), 1.0, -1.0)


def delta_m_point(
    variant: np.ndarray, control: np.ndarray, higher_is_better: bool | Iterable[bool] | np.ndarray = True
) -> np.ndarray:
    """delta_m in percent from per-task, per-seed values (T, n) of a variant and its controls, over the last axis.

    ``higher_is_better``: one direction for every task, or one per task (T,). Leading batch dimensions are kept
    (scipy's vectorised bootstrap passes (..., T, n)); means over seeds first, then the relative change per task,
    signed by its direction, then the flat mean over tasks.
    """
    sign = _signs(higher_is_better)
    v, c = variant.mean(-1), control.mean(-1)  # (..., T)
    return 100 * (sign * (v - c) / np.abs(c)).mean(-1)


def delta_m_interval(
    variant: np.ndarray,
    control: np.ndarray,
    higher_is_better: bool | Iterable[bool] | np.ndarray = True,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """A seed-paired percentile bootstrap interval for delta_m (scipy.stats.bootstrap, fixed seed).

    ``variant`` and ``control`` are (T, n): task t's metric on the n seeds both share, the control's column j from
    the same seed as the variant's; ``higher_is_better`` one direction, or one per task. A resample draws n seeds
    with replacement and keeps each seed's tasks and its control together (the pairing). Percentile rather than BCa
    because studies have few seeds (BCa's jackknife is unstable at n = 3). With 3 seeds there are 10 distinct
    resamples (multisets of seeds), each of probability at least 1/27 > 2.5% (one seed drawn three times), so the
    interval runs from the lowest to the highest delta_m of those 10. For one task these are the worst and the best
    single seed's delta_m (a ratio of means lies between the seeds' ratios); for several tasks a resample can go
    beyond them, because each task's ratio of means weighs the drawn seeds by that task's control values (with
    positive controls it stays within the mean over tasks of each task's worst and best single-seed change). NaN
    below two seeds.
    """
    variant, control = np.asarray(variant, float), np.asarray(control, float)
    n = variant.shape[-1]
    if n < 2:
        return (math.nan, math.nan)
    tasks = variant.shape[0]
    directions = np.broadcast_to(np.asarray(higher_is_better, dtype=bool), (tasks,))
    # bootstrap resamples the last axis of every sample together (paired): hand it one sample per task and side.
    samples = [*variant, *control]

    def statistic(*arrays: np.ndarray, axis: int = -1) -> np.ndarray:
        stacked = np.stack(arrays, axis=-2)  # (..., 2T, n)
        return delta_m_point(stacked[..., :tasks, :], stacked[..., tasks:, :], directions)

    result = stats.bootstrap(
        samples,
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=confidence,
        method="percentile",
        **_bootstrap_rng(),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def _bootstrap_rng() -> dict:
    """scipy >= 1.15 takes ``rng``; older versions ``random_state`` (same meaning for a Generator)."""
    import inspect

    name = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(BOOTSTRAP_SEED)}


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979): the i-th smallest of m is multiplied by (m - i + 1), made
    monotone by a running maximum and capped at 1. NaN p-values (undefined tests) are not in the family and stay NaN.
    Rejecting where the adjusted p < alpha controls the family-wise error rate at alpha."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, math.nan)
    defined = np.flatnonzero(~np.isnan(p))
    m = len(defined)
    if m == 0:
        return adjusted
    order = defined[np.argsort(p[defined], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def undefined_test(diff: np.ndarray) -> str:
    """Why a paired t-test of these differences is undefined, or '' when it is defined.

    ``fewer than two paired seeds``; ``identical on every seed`` (every difference within
    :data:`IDENTICAL_TOLERANCE` of 0); ``the same difference on every seed`` (all within it of each other: the
    differences have no spread, so t = mean / (sd / sqrt(n)) is infinite or 0 / 0 whatever the size of the
    difference, and d_z likewise - three seeds that each gain exactly 1 pp are not evidence of anything at p = 0).
    """
    diff = np.asarray(diff, dtype=float)
    if len(diff) < 2:
        return "fewer than two paired seeds"
    if np.max(np.abs(diff)) <= IDENTICAL_TOLERANCE:
        return "identical on every seed"
    if np.ptp(diff) <= IDENTICAL_TOLERANCE:
        return "the same difference on every seed"
    return ""


def effect_size(diff: np.ndarray) -> float:
    """Cohen's d_z of paired differences: mean / sample sd (NaN where the t-test is undefined: below two pairs, or
    no spread, see :func:`undefined_test`)."""
    diff = np.asarray(diff, dtype=float)
    if undefined_test(diff):
        return math.nan
    return float(np.mean(diff)) / float(np.std(diff, ddof=1))


def is_better(diff_mean: float, higher_is_better: bool = True) -> bool:
    """Whether a mean difference (variant minus control) goes the good way for the metric's direction."""
    if math.isnan(diff_mean):
        return False
    return diff_mean > 0 if higher_is_better else diff_mean < 0


def verdict(diff_mean: float, adjusted_p: float, alpha: float = ALPHA, *, higher_is_better: bool = True) -> str:
    """'win', 'loss' or 'tie' of a comparison at the adjusted level (a tie when the test is undefined); a win is a
    significant difference in the metric's good direction."""
    if not (adjusted_p < alpha):  # NaN included
        return "tie"
    return "win" if is_better(diff_mean, higher_is_better) else "loss"


def rank_variants(
    metrics: pd.DataFrame, comparisons: pd.DataFrame, split: str = "test", measure: Measure | None = None
) -> pd.DataFrame:
    """One row per variant, best first: mean rank over (task, seed) cells, the cells it was ranked in, and its
    wins / ties / losses against its control at the Holm-adjusted level (from :func:`compare`'s ``verdict``).

    In each cell - one task, one seed - the variants that trained the task and finished that seed are ranked by the
    task's metric in its direction (1 = best, ties share the mean rank, as :func:`scipy.stats.rankdata`); a
    variant's mean rank averages its cells.
    """
    values = _values(metrics, split, measure)
    ranks: dict[str, list[float]] = {}
    for _, cell in values.groupby(["task", "seed"], sort=False):
        sign = 1.0 if bool(cell["higher"].iloc[0]) else -1.0
        r = stats.rankdata(-sign * cell["value"].to_numpy())
        for variant, rank in zip(cell["variant"], r, strict=True):
            ranks.setdefault(variant, []).append(float(rank))
    rows = []
    for variant in dict.fromkeys(values["variant"]):
        mine = comparisons[comparisons["variant"] == variant]
        if "verdict" in mine:
            verdicts = list(mine["verdict"])
        else:  # a comparisons frame from elsewhere: higher is better unless it says otherwise
            higher = mine["higher_is_better"] if "higher_is_better" in mine else [True] * len(mine)
            verdicts = [
                verdict(d, p, higher_is_better=bool(h))
                for d, p, h in zip(mine["diff_mean"], mine["holm_p"], higher, strict=True)
            ]
        rows.append(
            {
                "variant": variant,
                "mean_rank": float(np.mean(ranks[variant])),
                "cells": len(ranks[variant]),
                "wins": verdicts.count("win"),
                "ties": verdicts.count("tie"),
                "losses": verdicts.count("loss"),
                "compared": len(verdicts),
            }
        )
    columns = ["variant", "mean_rank", "cells", "wins", "ties", "losses", "compared"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("mean_rank", kind="stable").reset_index(drop=True)


def paired_t_p(diff: np.ndarray) -> float:
    """Two-sided paired t-test of the differences (variant minus control per seed; = ``scipy.stats.ttest_rel``),
    NaN when the test is undefined (:func:`undefined_test`)."""
    diff = np.asarray(diff, dtype=float)
    if undefined_test(diff):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's precision note on nearly equal differences
        return float(stats.ttest_1samp(diff, 0.0).pvalue)


def _wilcoxon(diff: np.ndarray) -> float:
    diff = np.where(np.abs(diff) <= IDENTICAL_TOLERANCE, 0.0, diff)  # rounding noise is no difference
    if len(diff) < 2 or not np.any(diff != 0):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.wilcoxon(diff).pvalue)
