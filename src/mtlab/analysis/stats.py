"""Statistics over seeds, computed from the results store (never from printed text).

* :func:`summarize`: per variant and task, n, mean, sample std, 95% Student-t confidence interval, min and max.
* :func:`compare`: each variant against its control over the seeds both have (paired t-test and Wilcoxon
  signed-rank test, two-sided; p-values reported as numbers).
* :func:`delta_m`: the multi-task summary of Maninis et al. (2019), as used by Vandenhende et al. (2021) and
  Nash-MTL: ``delta_m = 100 / T * sum_t (-1)^l_t (M_t - M_control_t) / M_control_t`` with ``l_t = 0`` for
  higher-is-better metrics (accuracy) and 1 for lower-is-better ones (loss) - the flat mean over the tasks' metrics
  (LibMTL first averages within each task; with one metric per task, as here, the two coincide) - with a 95%
  seed-paired percentile bootstrap interval (:func:`delta_m_interval`).
* :func:`holm`: Holm's (1979) step-down adjustment of a family of p-values; :func:`effect_size`: Cohen's d_z of
  paired differences (mean difference / sd of differences).
* :func:`rank_variants`: mean rank over tasks and seeds, and wins / ties / losses against the control at the
  adjusted level.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

HIGHER_IS_BETTER = {"acc": True, "loss": False}
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 12  # fixed: the same store gives the same interval on every rebuild of the report
ALPHA = 0.05


def _values(metrics: pd.DataFrame, split: str, metric: str) -> pd.DataFrame:
    rows = metrics[(metrics["split"] == split) & (metrics["metric"] == metric) & (metrics["task"] != "")]
    return rows[["run_id", "variant", "seed", "task", "value"]]


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t interval for the mean; NaN for fewer than two values."""
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))
    return (mean - half, mean + half)


def summarize(metrics: pd.DataFrame, split: str = "test", metric: str = "acc") -> pd.DataFrame:
    """One row per (variant, task): n, mean, std (ddof 1), ci_low, ci_high, min, max. Variants keep store order."""
    rows = []
    values = _values(metrics, split, metric)
    for (variant, task), group in values.groupby(["variant", "task"], sort=False):
        v = group["value"].to_numpy()
        low, high = t_interval(v)
        rows.append(
            {
                "variant": variant,
                "task": task,
                "n": len(v),
                "mean": float(v.mean()),
                "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                "ci_low": low,
                "ci_high": high,
                "min": float(v.min()),
                "max": float(v.max()),
            }
        )
    return pd.DataFrame(rows, columns=["variant", "task", "n", "mean", "std", "ci_low", "ci_high", "min", "max"])


def compare(
    metrics: pd.DataFrame, controls: dict[str, dict[str, str]], split: str = "test", metric: str = "acc"
) -> pd.DataFrame:
    """Paired comparison of each variant with its control per task, over the seeds both finished."""
    values = _values(metrics, split, metric)
    table = values.pivot_table(index=["variant", "task"], columns="seed", values="value", aggfunc="first")
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
                    "n_pairs": len(diff),
                    "diff_mean": float(diff.mean()) if len(diff) else math.nan,
                    "diff_ci_low": low,
                    "diff_ci_high": high,
                    "effect_size": effect_size(diff),
                    "t_p": _paired_t(a[both].to_numpy(), b[both].to_numpy()),
                    "wilcoxon_p": _wilcoxon(diff),
                }
            )
    columns = [
        "variant", "task", "control", "n_pairs", "diff_mean", "diff_ci_low", "diff_ci_high", "effect_size", "t_p",
        "wilcoxon_p", "holm_p",
    ]
    frame = pd.DataFrame(rows, columns=columns[:-1])
    frame["holm_p"] = holm(frame["t_p"].to_numpy(dtype=float)) if len(frame) else []
    return frame[columns]


def delta_m(
    metrics: pd.DataFrame, controls: dict[str, dict[str, str]], split: str = "test", metric: str = "acc"
) -> pd.DataFrame:
    """Per variant: delta_m in percent over the tasks that have a control, how many tasks that is, and its 95%
    seed-paired bootstrap interval (``ci_low``, ``ci_high``, NaN below two paired seeds) over ``n_seeds`` seeds.

    The point estimate uses every finished seed's mean (a variant and its control may have different seeds
    finished); the interval resamples the seeds that the variant and all its tasks' controls share.
    """
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    values = _values(metrics, split, metric)
    means = values.groupby(["variant", "task"], sort=False)["value"].mean()
    table = values.pivot_table(index=["variant", "task"], columns="seed", values="value", aggfunc="first")
    rows = []
    for variant, per_task in controls.items():
        pairs = [
            (task, control)
            for task, control in per_task.items()
            if (variant, task) in means.index and (control, task) in means.index and means[(control, task)] != 0
        ]
        if not pairs:
            continue
        terms = [sign * (means[(variant, t)] - means[(c, t)]) / means[(c, t)] for t, c in pairs]
        rows_v = np.stack([table.loc[(variant, t)].to_numpy(dtype=float) for t, _ in pairs])  # (T, seeds)
        rows_c = np.stack([table.loc[(c, t)].to_numpy(dtype=float) for t, c in pairs])
        paired = ~(np.isnan(rows_v).any(0) | np.isnan(rows_c).any(0))
        low, high = delta_m_interval(rows_v[:, paired], rows_c[:, paired], higher_is_better=sign > 0)
        rows.append(
            {
                "variant": variant,
                "delta_m": 100 * float(np.mean(terms)),
                "tasks": len(terms),
                "ci_low": low,
                "ci_high": high,
                "n_seeds": int(paired.sum()),
            }
        )
    return pd.DataFrame(rows, columns=["variant", "delta_m", "tasks", "ci_low", "ci_high", "n_seeds"])


def delta_m_point(variant: np.ndarray, control: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """delta_m in percent from per-task, per-seed values (T, n) of a variant and its controls, over the last axis.

    Leading batch dimensions are kept (scipy's vectorised bootstrap passes (..., T, n)); means over seeds first,
    then the relative change per task, then the flat mean over tasks.
    """
    sign = 1.0 if higher_is_better else -1.0
    v, c = variant.mean(-1), control.mean(-1)  # (..., T)
    return 100 * (sign * (v - c) / c).mean(-1)


def delta_m_interval(
    variant: np.ndarray, control: np.ndarray, higher_is_better: bool = True, confidence: float = 0.95
) -> tuple[float, float]:
    """A seed-paired percentile bootstrap interval for delta_m (scipy.stats.bootstrap, fixed seed).

    ``variant`` and ``control`` are (T, n): task t's metric on the n seeds both share, the control's column j from
    the same seed as the variant's. A resample draws n seeds with replacement and keeps each seed's tasks and its
    control together (the pairing). Percentile rather than BCa because studies have few seeds (BCa's jackknife is
    unstable at n = 3). With 3 seeds a resample of one seed drawn three times has probability 1/27 > 2.5%, so for
    one task the interval runs exactly from the worst to the best single seed's delta_m. NaN below two seeds.
    """
    variant, control = np.asarray(variant, float), np.asarray(control, float)
    n = variant.shape[-1]
    if n < 2:
        return (math.nan, math.nan)
    tasks = variant.shape[0]
    # bootstrap resamples the last axis of every sample together (paired): hand it one sample per task and side.
    samples = [*variant, *control]

    def statistic(*arrays: np.ndarray, axis: int = -1) -> np.ndarray:
        stacked = np.stack(arrays, axis=-2)  # (..., 2T, n)
        return delta_m_point(stacked[..., :tasks, :], stacked[..., tasks:, :], higher_is_better)

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


def effect_size(diff: np.ndarray) -> float:
    """Cohen's d_z of paired differences: mean / sample sd (NaN below two pairs or when the sd is 0)."""
    diff = np.asarray(diff, dtype=float)
    if len(diff) < 2:
        return math.nan
    sd = float(np.std(diff, ddof=1))
    return float(np.mean(diff)) / sd if sd > 0 else math.nan


def verdict(diff_mean: float, adjusted_p: float, alpha: float = ALPHA) -> str:
    """'win', 'loss' or 'tie' of a comparison at the adjusted level (a tie when the test is undefined)."""
    if not (adjusted_p < alpha):  # NaN included
        return "tie"
    return "win" if diff_mean > 0 else "loss"


def rank_variants(
    metrics: pd.DataFrame, comparisons: pd.DataFrame, split: str = "test", metric: str = "acc"
) -> pd.DataFrame:
    """One row per variant, best first: mean rank over (task, seed) cells, the cells it was ranked in, and its
    wins / ties / losses against its control at the Holm-adjusted level (from :func:`compare`'s ``holm_p``).

    In each cell - one task, one seed - the variants that trained the task and finished that seed are ranked (1 =
    best, ties share the mean rank, as :func:`scipy.stats.rankdata`); a variant's mean rank averages its cells.
    """
    values = _values(metrics, split, metric)
    higher = HIGHER_IS_BETTER[metric]
    ranks: dict[str, list[float]] = {}
    for _, cell in values.groupby(["task", "seed"], sort=False):
        r = stats.rankdata(-cell["value"].to_numpy() if higher else cell["value"].to_numpy())
        for variant, rank in zip(cell["variant"], r, strict=True):
            ranks.setdefault(variant, []).append(float(rank))
    rows = []
    for variant in dict.fromkeys(values["variant"]):
        mine = comparisons[comparisons["variant"] == variant]
        verdicts = [verdict(d, p) for d, p in zip(mine["diff_mean"], mine["holm_p"], strict=True)]
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


def _paired_t(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.allclose(a, b):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance of differences: p is NaN, not a warning
        return float(stats.ttest_rel(a, b).pvalue)


def _wilcoxon(diff: np.ndarray) -> float:
    if len(diff) < 2 or not np.any(diff != 0):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.wilcoxon(diff).pvalue)
