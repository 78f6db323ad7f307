"""Statistics over seeds, computed from the results store (never from printed text).

* :func:`summarize`: per variant and task, n, mean, sample std, 95% Student-t confidence interval, min and max.
* :func:`compare`: each variant against its control over the seeds both have (paired t-test and Wilcoxon
  signed-rank test, two-sided; p-values reported as numbers).
* :func:`delta_m`: the multi-task summary of Maninis et al. (2019), as used by Vandenhende et al. (2021):
  ``delta_m = 100 / T * sum_t (-1)^l_t (M_t - M_control_t) / M_control_t`` with ``l_t = 0`` for higher-is-better
  metrics (accuracy) and 1 for lower-is-better ones (loss), over per-variant means.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

HIGHER_IS_BETTER = {"acc": True, "loss": False}


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
                    "t_p": _paired_t(a[both].to_numpy(), b[both].to_numpy()),
                    "wilcoxon_p": _wilcoxon(diff),
                }
            )
    columns = ["variant", "task", "control", "n_pairs", "diff_mean", "diff_ci_low", "diff_ci_high", "t_p", "wilcoxon_p"]
    return pd.DataFrame(rows, columns=columns)


def delta_m(
    metrics: pd.DataFrame, controls: dict[str, dict[str, str]], split: str = "test", metric: str = "acc"
) -> pd.DataFrame:
    """Per variant: delta_m in percent over the tasks that have a control, and how many tasks that is."""
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    means = _values(metrics, split, metric).groupby(["variant", "task"], sort=False)["value"].mean()
    rows = []
    for variant, per_task in controls.items():
        terms = [
            sign * (means[(variant, task)] - means[(control, task)]) / means[(control, task)]
            for task, control in per_task.items()
            if (variant, task) in means.index and (control, task) in means.index and means[(control, task)] != 0
        ]
        if terms:
            rows.append({"variant": variant, "delta_m": 100 * float(np.mean(terms)), "tasks": len(terms)})
    return pd.DataFrame(rows, columns=["variant", "delta_m", "tasks"])


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
