"""The report section "Against the original study": this study's numbers beside the original's, and its claims.

A study run at another budget than the original protocol's (``reference.budget``), or with command-line overrides
that change the protocol (anything but where and how fast runs train: :data:`~mtlab.study.reference.EXECUTION_KEYS`),
is not comparable: the section says why and lists the original's claims, with no verdicts.

Otherwise, for every value of the spec's ``reference`` (:mod:`mtlab.study.reference`) the section puts the original
number beside this study's mean over seeds with its 95% Student-t interval and n, and gives a verdict on the difference
(this study minus the original): ``within`` when its 95% interval holds 0, else ``above`` or ``below``. Where the
original gives a std and n (n >= 2) the interval is Welch's, so the original's own seed noise counts too; otherwise
the original value is taken as exact and the interval is this study's alone (the original lies within, above or
below this study's interval).

Values are in the original's display units: fraction metrics (acc, f1, auroc) in percent, every other metric as
stored (loss, MAE and RMSE in the target's units, R²).

For every claim of the original, each of its comparisons is tested on this study's seeds, paired (variants of one
seed share their data draw): a two-sided paired t-test, Holm-adjusted over all comparisons of the section, on the
comparison's metric (default: the task's primary one) signed by its direction, so that a positive difference is
always better (higher accuracy, lower loss or MAE). A ``better`` comparison is supported when the adjusted p < 0.05
with the expected sign, contradicted when the sign is the opposite one; a ``not_worse`` comparison holds unless the
variant is significantly worse. A claim is supported when all its comparisons are, contradicted when any is.

With ``baselines`` (the original's single-task numbers), each variant that trains every baseline task gets Δm per
seed (Maninis et al. 2019, in percent: the mean over the baseline's metrics of ``(-1)^{l_k} (M_k - B_k) / B_k``,
l_k = 1 when lower is better) twice: against the original's baselines B, and - with ``single_task`` - against this
study's own single-task variants (B_k their mean over seeds). The first is what the papers' tables report, and is
compared with the published Δm (``delta_m``) like any original value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import ValidationError
from scipy import stats

from mtlab.pages.blocks import Block, Bullets, Cell, Heading, Table, Text
from mtlab.report.stats import paired_t_p
from mtlab.report.tables import MISSING, StudyData, format_p
from mtlab.report.units import decimals, difference_unit, scale, unit
from mtlab.study.reference import Baselines, Claim, Comparison, OriginalValue, Reference, incomparable_reasons

ALPHA = 0.05
CONFIDENCE = 0.95
TITLE = "Against the original study"


# ------------------------------------------------------------------------------------------- verdict logic


@dataclass(frozen=True)
class Agreement:
    """This study's values of one (variant, task, metric) against the original's number, in display units."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    difference: float
    """This study's mean minus the original's."""
    diff_low: float
    diff_high: float
    se: float
    """Standard error of the difference (both sides' when the original gives std and n)."""
    verdict: str
    """``within`` (the difference's 95% interval holds 0), ``above``, ``below``, or ``too few runs``."""


def agreement(values: np.ndarray, original: OriginalValue, confidence: float = CONFIDENCE) -> Agreement:
    """Compare ``values`` (one per seed) with ``original``: Welch's interval when it gives std and n >= 2."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        nan = math.nan
        return Agreement(n, mean, nan, nan, nan, mean - original.mean if n else nan, nan, nan, nan, "too few runs")
    std = float(values.std(ddof=1))
    half_own = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    var_mine = std**2 / n
    if original.std is not None and original.n is not None and original.n >= 2:
        var_theirs = original.std**2 / original.n
        se = math.sqrt(var_mine + var_theirs)
        denominator = var_mine**2 / (n - 1) + var_theirs**2 / (original.n - 1)
        df = (var_mine + var_theirs) ** 2 / denominator if denominator > 0 else math.inf
    else:  # the original is one number without spread: take it as exact
        se, df = math.sqrt(var_mine), n - 1
    difference = mean - original.mean
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se if se > 0 else 0.0
    low, high = difference - half, difference + half
    verdict = "within" if low <= 0 <= high else ("above" if low > 0 else "below")
    return Agreement(n, mean, std, mean - half_own, mean + half_own, difference, low, high, se, verdict)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment (Holm, 1979) of a family of p-values; NaN entries are left out and stay NaN."""
    index = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(index, key=lambda i: pvalues[i])
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def comparison_outcome(expect: str, n_pairs: int, diff_mean: float, p_adjusted: float, alpha: float = ALPHA) -> str:
    """``supported``, ``contradicted``, ``not shown`` or ``untestable`` (fewer than two paired seeds).

    ``diff_mean`` > 0 means the variant is better. An undefined p (all differences the same) counts as no evidence.
    """
    if n_pairs < 2 or math.isnan(diff_mean):
        return "untestable"
    significant = not math.isnan(p_adjusted) and p_adjusted < alpha
    if significant and diff_mean < 0:
        return "contradicted"
    if expect == "not_worse":
        return "supported"
    return "supported" if significant and diff_mean > 0 else "not shown"


def claim_verdict(outcomes: list[str]) -> str:
    """A claim holds when all its comparisons do; one contradiction contradicts it; otherwise it is not shown."""
    if "contradicted" in outcomes:
        return "contradicted"
    if all(o == "supported" for o in outcomes):
        return "supported"
    return "not shown" if "not shown" in outcomes else "untestable"


# ------------------------------------------------------------------------------------------ numeric frames


def study_reference(study: StudyData) -> Reference | None:
    """The reference section of the study's stored spec, or None; raises pydantic's ValidationError if the stored
    section no longer validates (a store written by another mtlab)."""
    raw = (study.info.get("spec") or {}).get("reference")
    return None if raw is None else Reference.model_validate(raw)


def _per_seed(study: StudyData, variant: str, task: str, metric: str) -> pd.Series:
    """This study's test values per seed in the original's units (the store holds fractions; the original gives
    them in percent)."""
    m = study.metrics
    rows = m[(m["split"] == "test") & (m["metric"] == metric) & (m["variant"] == variant) & (m["task"] == task)]
    return rows.groupby("seed")["value"].first() * scale(metric)


def comparison_metric(study: StudyData, c: Comparison) -> tuple[str, float]:
    """The metric a comparison is on (default: the task's primary one) and the sign making "better" positive."""
    info = study.task(c.task)
    metric = c.metric or info.primary
    higher = info.directions.get(metric)
    if higher is None:  # not recorded by this study's runs (so untestable here): the type knows its direction
        higher = _type_direction(info.type, metric)
    return metric, 1.0 if higher in ("max", True) else -1.0


def _type_direction(type_name: str, metric: str) -> str:
    try:
        from mtlab.tasks import TASK_TYPES

        return TASK_TYPES.get(type_name).direction(metric)
    except (KeyError, ValueError):
        return "min" if metric == "loss" else "max"


def reference_frame(study: StudyData, reference: Reference) -> pd.DataFrame:
    """One row per original value: the original number and the :class:`Agreement` of this study with it."""
    rows = []
    for variant, per_task in reference.values.items():
        for task, per_metric in per_task.items():
            for metric, original in per_metric.items():
                a = agreement(_per_seed(study, variant, task, metric).to_numpy(), original)
                rows.append(
                    {
                        "variant": variant,
                        "task": task,
                        "metric": metric,
                        "original": original.mean,
                        "original_std": original.std,
                        "original_n": original.n,
                        "note": original.note,
                        **a.__dict__,
                    }
                )
    return pd.DataFrame(rows)


def delta_m_per_seed(study: StudyData, variant: str, baseline: dict[str, dict[str, float]]) -> pd.Series:
    """Δm (percent) of ``variant`` per seed against ``baseline`` (task -> metric -> value, display units), over the
    seeds that recorded every metric; empty when a metric is missing everywhere."""
    terms = []
    for task, per_metric in baseline.items():
        for metric, base in per_metric.items():
            info = study.task(task)
            sign = 1.0 if (info.directions.get(metric) or _type_direction(info.type, metric)) == "max" else -1.0
            terms.append(sign * (_per_seed(study, variant, task, metric) - base) / base * 100.0)
    frame = pd.concat(terms, axis=1).dropna() if terms else pd.DataFrame()
    return frame.mean(axis=1) if not frame.empty else pd.Series(dtype=float)


def own_baseline(study: StudyData, baselines: Baselines, single_task: dict[str, str]) -> dict[str, dict[str, float]]:
    """This study's single-task numbers for the baseline metrics: each single-task variant's mean over seeds."""
    return {
        task: {metric: float(_per_seed(study, single_task[task], task, metric).mean()) for metric in per_metric}
        for task, per_metric in baselines.values.items()
    }


def delta_m_frame(study: StudyData, reference: Reference) -> pd.DataFrame:
    """One row per variant training every baseline task: Δm against the original's baselines (with the published
    Δm and the :class:`Agreement`) and against this study's single-task variants."""
    baselines = reference.baselines
    if baselines is None:
        return pd.DataFrame()
    ours = own_baseline(study, baselines, reference.single_task) if reference.single_task else None
    rows = []
    for variant in study.variants:
        trained = set(study.metrics.loc[study.metrics["variant"] == variant, "task"])
        if not set(baselines.values) <= trained:
            continue
        theirs = delta_m_per_seed(study, variant, baselines.values)
        published = reference.delta_m.get(variant)
        a = agreement(theirs.to_numpy(), published or OriginalValue(mean=0.0))
        own = delta_m_per_seed(study, variant, ours) if ours is not None else pd.Series(dtype=float)
        low, high = _interval(own.to_numpy())
        rows.append(
            {
                "variant": variant,
                "published": published.mean if published else math.nan,
                "note": published.note if published else "",
                **{k: getattr(a, k) for k in ("n", "mean", "std", "ci_low", "ci_high", "difference", "se")},
                "verdict": a.verdict if published else "",
                "own_n": len(own),
                "own_mean": float(own.mean()) if len(own) else math.nan,
                "own_low": low,
                "own_high": high,
            }
        )
    return pd.DataFrame(rows)


def delta_m_table(frame: pd.DataFrame, baselines: Baselines) -> Table:
    headers = ["Variant", "Published Δm", "Δm vs the original's baselines", "95% CI", "Verdict"]
    headers += ["Δm vs this study's single-task runs", "95% CI"]
    rows = []
    for r in frame.to_dict("records"):
        rows.append(
            [
                Cell(r["variant"], kind="text"),
                Cell(_fmt(r["published"], "+.2f"), note=r["note"]),
                Cell(_fmt(r["mean"], "+.2f"), note=f"n={r['n']}"),
                Cell(f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" if _ok(r["ci_low"]) else MISSING),
                Cell(r["verdict"] or MISSING, strong=r["verdict"] in ("above", "below"), kind="text"),
                Cell(_fmt(r["own_mean"], "+.2f"), note=f"n={r['own_n']}"),
                Cell(f"[{r['own_low']:+.2f}, {r['own_high']:+.2f}]" if _ok(r["own_low"]) else MISSING),
            ]
        )
    metrics = ", ".join(f"{t} {m}" for t, per_metric in baselines.values.items() for m in per_metric)
    caption = (
        f"Δm in percent (Maninis et al. 2019): the mean over {metrics} of the relative change against single-task "
        "numbers, signed so that positive is better. Against the original's published single-task numbers "
        f"({baselines.source}) - what the papers report, compared with their Δm as the values above are - and "
        "against the mean over seeds of this study's own single-task runs. Mean over seeds with 95% intervals."
    )
    return Table(headers, rows, caption)


def claims_frame(study: StudyData, reference: Reference) -> pd.DataFrame:
    """One row per comparison of every claim: the original's difference, this study's paired one, Holm's p."""
    rows = []
    for number, claim in enumerate(reference.claims, 1):
        for c in claim.compare:
            metric, sign = comparison_metric(study, c)  # sign * difference > 0: the variant is better
            a, b = _per_seed(study, c.variant, c.task, metric), _per_seed(study, c.vs, c.task, metric)
            both = a.index.intersection(b.index)
            diff = sign * (a[both] - b[both]).to_numpy()
            low, high = _interval(diff)
            rows.append(
                {
                    "claim": number,
                    "variant": c.variant,
                    "vs": c.vs,
                    "task": c.task,
                    "metric": metric,
                    "expect": c.expect,
                    "original_diff": _original_diff(reference, c, metric, sign),
                    "n_pairs": len(diff),
                    "diff_mean": float(diff.mean()) if len(diff) else math.nan,
                    "diff_low": low,
                    "diff_high": high,
                    "p": _paired_p(diff),
                }
            )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    testable = frame["n_pairs"] >= 2
    frame["p_holm"] = math.nan
    frame.loc[testable, "p_holm"] = holm(frame.loc[testable, "p"].tolist())
    frame["outcome"] = [
        comparison_outcome(r.expect, r.n_pairs, r.diff_mean, r.p_holm) for r in frame.itertuples(index=False)
    ]
    return frame


def _original_diff(reference: Reference, c: Comparison, metric: str, sign: float) -> float:
    def value(variant: str) -> float:
        original = reference.values.get(variant, {}).get(c.task, {}).get(metric)
        return original.mean if original is not None else math.nan

    return sign * (value(c.variant) - value(c.vs))


def _interval(diff: np.ndarray) -> tuple[float, float]:
    if len(diff) < 2:
        return (math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(diff) - 1)) * float(diff.std(ddof=1)) / math.sqrt(len(diff))
    return (float(diff.mean()) - half, float(diff.mean()) + half)


def _paired_p(diff: np.ndarray) -> float:
    """Two-sided one-sample t-test of the paired differences (= scipy's ``ttest_rel``); NaN when undefined, as in the
    comparisons table: fewer than two pairs, or differences the same on every seed to within an absolute 1e-12
    (:func:`mtlab.report.stats.undefined_test`; exact equality misses differences that differ by rounding alone)."""
    return paired_t_p(diff)


# -------------------------------------------------------------------------------------------------- blocks


def reference_blocks(study: StudyData) -> list[Block]:
    """The section's blocks; none when the study's spec has no reference."""
    try:
        reference = study_reference(study)
    except ValidationError as e:
        return [Heading(TITLE), Text(f"The stored reference section no longer validates: {e}", muted=True)]
    if reference is None:
        return []
    blocks: list[Block] = [Heading(TITLE), Text(f"Original: {reference.source}.")]
    if reference.measure:
        blocks.append(Text(f"Its numbers: {reference.measure}."))
    reasons = incomparable_reasons(reference, study.info.get("budget"), study.info.get("overrides"))
    if reasons:  # numbers of another protocol: verdicts on them would be noise dressed as findings
        blocks.append(
            Text(
                f"Not comparable: this study {', and '.join(reasons)}, so its numbers are not set against the "
                "original's and the original's claims are not tested. Run the study at the original protocol's "
                "budget, without overrides that change it, for verdicts.",
            )
        )
        if reference.claims:
            blocks += [Heading("The original's claims (not tested here)", 3)]
            blocks.append(Bullets([claim.claim for claim in reference.claims]))
        if reference.differences:
            blocks += [Text("Known differences between the original protocol and this study:"),
                       Bullets(reference.differences)]  # fmt: skip
        return blocks
    if reference.differences:
        blocks.append(Text("Known differences between the original protocol and this study:"))
        blocks.append(Bullets(reference.differences))
    values = reference_frame(study, reference) if reference.values else pd.DataFrame()
    if values.empty and reference.baselines is not None:
        blocks.append(Text("The original's per-method numbers are not given here; Δm is computed below."))
    elif values.empty:
        blocks.append(Text("The original reported no numbers for this study's variants; only its claims are checked."))
    else:
        blocks += [Text(_values_summary(values)), values_table(values)]
    delta_m = delta_m_frame(study, reference)
    if not delta_m.empty:
        assert reference.baselines is not None
        blocks += [Heading("Δm against single-task baselines", 3), delta_m_table(delta_m, reference.baselines)]
    claims = claims_frame(study, reference) if reference.claims else pd.DataFrame()
    if not claims.empty:
        blocks += [Heading("The original's claims", 3), claims_table(reference.claims, claims)]
        blocks.append(comparisons_table(claims))
    return blocks


def _values_summary(values: pd.DataFrame) -> str:
    counts = values["verdict"].value_counts()
    comparable = int(len(values) - counts.get("too few runs", 0))
    if comparable == 0:
        return "No original value can be compared yet: each needs two or more finished runs of its variant."
    parts = [f"{int(counts.get(v, 0))} {v}" for v in ("within", "above", "below") if counts.get(v, 0)]
    return f"Of {comparable} comparable original values: {', '.join(parts)}."


def values_table(values: pd.DataFrame) -> Table:
    headers = ["Variant", "Task", "Original", "This study", "95% CI", "Difference", "95% CI of difference", "Verdict"]
    rows = []
    for r in values.to_dict("records"):
        digits = _digits(r["metric"], r["original"])
        spread = f" ± {r['original_std']:{digits}}" if _ok(r["original_std"]) else ""
        n = f"n={int(r['original_n'])}" if _ok(r["original_n"]) else ""
        rows.append(
            [
                Cell(r["variant"], kind="text"),
                Cell(f"{r['task']} {_with_unit(r['metric'], unit(r['metric']))}", kind="text"),
                Cell(f"{r['original']:{digits}}{spread}", note=" ".join(x for x in (n, r["note"]) if x)),
                Cell(
                    f"{r['mean']:{digits}} ± {r['std']:{digits}}" if _ok(r["std"]) else _fmt(r["mean"], digits),
                    note=f"n={r['n']}",
                ),
                Cell(f"[{r['ci_low']:{digits}}, {r['ci_high']:{digits}}]" if _ok(r["ci_low"]) else MISSING),
                Cell(_fmt(r["difference"], "+" + digits), note=_in_se(r)),
                Cell(f"[{r['diff_low']:+{digits}}, {r['diff_high']:+{digits}}]" if _ok(r["diff_low"]) else MISSING),
                Cell(r["verdict"], strong=r["verdict"] in ("above", "below"), kind="text"),
            ]
        )
    caption = (
        "This study's test values over seeds (mean ± sample std, n, 95% Student-t interval) beside the original's. "
        "Difference: this study minus the original, also in standard errors of the difference. Its 95% interval is "
        "Welch's where the original gives a std and n, otherwise this study's alone. Verdict: 'within' when that "
        "interval holds 0, 'above'/'below' when this study's mean is above/below the original beyond it."
    )
    return Table(headers, rows, caption)


def claims_table(claims: list[Claim], frame: pd.DataFrame) -> Table:
    rows = []
    for number, claim in enumerate(claims, 1):
        outcomes = frame.loc[frame["claim"] == number, "outcome"].tolist()
        tally = ", ".join(f"{outcomes.count(o)} {o}" for o in dict.fromkeys(outcomes))
        verdict = claim_verdict(outcomes)
        rows.append(
            [
                Cell(str(number)),
                Cell(claim.claim, kind="text"),
                Cell(verdict, note=f"({tally})", strong=verdict in ("supported", "contradicted"), kind="text"),
            ]
        )
    caption = (
        f"A claim is supported when every comparison behind it is (paired over seeds, Holm-adjusted p < {ALPHA} over "
        "all comparisons below), contradicted when any comparison goes significantly the other way, and otherwise "
        "not shown by this study (untestable: fewer than two paired seeds)."
    )
    return Table(["#", "Claim", "Verdict"], rows, caption)


def comparisons_table(frame: pd.DataFrame) -> Table:
    headers = ["#", "Variant", "Expected", "vs", "Task", "Original Δ", "This study Δ", "95% CI", "Pairs", "p (Holm)"]
    headers.append("Result")
    rows = []
    for r in frame.to_dict("records"):
        digits = _digits(r["metric"], r["original_diff"] if _ok(r["original_diff"]) else r["diff_mean"])
        expect = "better than" if r["expect"] == "better" else "not worse than"
        rows.append(
            [
                Cell(str(r["claim"])),
                Cell(r["variant"], kind="text"),
                Cell(expect, kind="text"),
                Cell(r["vs"], kind="text"),
                Cell(f"{r['task']} {_with_unit(r['metric'], difference_unit(r['metric']))}", kind="text"),
                Cell(_fmt(r["original_diff"], "+" + digits)),
                Cell(_fmt(r["diff_mean"], "+" + digits)),
                Cell(f"[{r['diff_low']:+{digits}}, {r['diff_high']:+{digits}}]" if _ok(r["diff_low"]) else MISSING),
                Cell(str(r["n_pairs"])),
                Cell(format_p(r["p_holm"])),
                Cell(r["outcome"], strong=r["outcome"] in ("supported", "contradicted"), kind="text"),
            ]
        )
    caption = (
        "Each comparison behind a claim: Δ > 0 means the variant is better by the metric's direction (higher "
        "accuracy, lower loss or MAE: a lower-is-better metric's difference is negated). Original Δ "
        "from the original's means where it reports both variants. This study's Δ is the mean paired difference "
        "over seeds, with its 95% interval; p: two-sided paired t-test, Holm-adjusted. 'not worse than' holds "
        "unless the variant is significantly worse."
    )
    return Table(headers, rows, caption)


def _digits(metric: str, reference: float | None) -> str:
    """A format spec for values of ``metric`` already in display units (percent for fractions)."""
    return f".{decimals(metric, reference if _ok(reference) else None)}f"


def _with_unit(metric: str, unit_: str) -> str:
    return f"{metric} ({unit_})" if unit_ else metric


def _ok(x: object) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _in_se(row: dict) -> str:
    """The difference in standard errors of the difference ("+1.3 SE"), when it has one."""
    if not (_ok(row["se"]) and row["se"] > 0 and _ok(row["difference"])):
        return ""
    return f"{row['difference'] / row['se']:+.1f} SE"


def _fmt(x: float, spec: str) -> str:
    return format(x, spec) if _ok(x) else MISSING
