"""The report's main tables as LaTeX for a paper: ``mtlab export STUDY_DIR --format latex``.

One ``.tex`` file per table - ``summary.tex`` (every variant: each task's primary test metric as mean ± std with its
95% interval, Δm), ``comparisons.tex`` (each variant against its control) and ``ranking.tex`` (mean rank) - each a
``table`` float built with booktabs rules, to ``\\input`` into a paper whose preamble loads ``booktabs``; and
``tables.tex``, a small document that inputs them all, so the files can be checked by compiling it (it says why
``ranking.tex`` is missing when the study has no ranking: that takes a control and three or more variants).

The numbers are the report's (:mod:`mtlab.report.tables`, the same statistics and rounding). Bold marks the best mean
of a column among the variants the report ranks (two or more finished runs), by the metric's direction - the
highest accuracy, the lowest MAE - and the header says which way is better. A variant that differs from its control
at the Holm-adjusted level carries a mark (* better, † worse, by the metric's direction); the note under the table
says what the marks, intervals and family are.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mtlab import atomic
from mtlab.report.stats import ALPHA
from mtlab.report.tables import (
    StudyData,
    comparison_frame,
    format_p,
    load_study,
    no_ranking_reason,
    ranked,
    ranking_caption_apart,
    ranking_frame,
    summary_frame,
)
from mtlab.report.units import MISSING, difference_unit, format_value, phrase, unit

SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "–": "--",
    "−": "-",
    "Δ": r"$\Delta$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "²": r"\textsuperscript{2}",
    "λ": r"$\lambda$",
    "→": r"$\rightarrow$",
    "×": r"$\times$",
    "·": r"$\cdot$",
    "…": r"\ldots{}",
}
BETTER_MARK = r"\textsuperscript{*}"
WORSE_MARK = r"\textsuperscript{\dag}"
ARROWS = {True: r"$\uparrow$", False: r"$\downarrow$"}
PREAMBLE = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{lmodern}
\usepackage[utf8]{inputenc}
\usepackage{booktabs}
\usepackage[margin=1.5cm,landscape]{geometry}
\begin{document}
"""


def escape(text: str) -> str:
    """``text`` as LaTeX that prints it: special characters escaped, the few symbols the report uses spelled out."""
    return "".join(SPECIALS.get(char, char) for char in str(text))


def write_latex(directory: Path, out: Path) -> list[Path]:
    """Write the study's tables as ``<name>.tex`` and ``tables.tex`` (a document inputting them) into ``out``."""
    study = load_study(directory)
    tables = latex_tables(study)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, tex in tables.items():
        path = out / f"{name}.tex"
        atomic.write_text(path, tex)
        written.append(path)
    document = out / "tables.tex"
    inputs = "\n".join(rf"\input{{{p.stem}}}" for p in written)
    if "ranking" not in tables:  # said in the document, where the table would be (ranking.tex is not written)
        reason = no_ranking_reason(study, summary_frame(study)) or "No ranking."
        inputs += f"\n% ranking.tex is not written\n\\par\\noindent{{\\footnotesize {escape(reason)}}}"
    atomic.write_text(document, PREAMBLE + inputs + "\n\\end{document}\n")
    return [*written, document]


def latex_tables(study: StudyData) -> dict[str, str]:
    """``{name: table}`` for the tables the study has: summary always, comparisons and ranking when it has them."""
    summary = summary_frame(study)
    comparisons = comparison_frame(study)
    tables = {"summary": summary_latex(study, summary, comparisons)}
    if not comparisons.empty:
        tables["comparisons"] = comparisons_latex(comparisons)
    ranking = ranking_frame(study, summary, comparisons)
    if len(ranking):
        tables["ranking"] = ranking_latex(study, ranking)
    return tables


# ------------------------------------------------------------------------------------------------------ tables


def summary_latex(study: StudyData, summary: pd.DataFrame, comparisons: pd.DataFrame) -> str:
    """Per variant: n, then per task its primary test metric (mean ± std, 95% interval), then Δm if any."""
    marks = significance_marks(comparisons)
    with_delta_m = bool(summary["delta_m"].notna().any())
    best = best_means(study, summary)
    top = [r"\multicolumn{2}{c}{}"]
    rules = []
    sub = ["Variant", "$n$"]
    for i, task in enumerate(study.tasks):
        metric, higher = study.measure[task]
        top.append(rf"\multicolumn{{2}}{{c}}{{{escape(task)}}}")
        rules.append(rf"\cmidrule(lr){{{3 + 2 * i}-{4 + 2 * i}}}")
        sub += [f"{escape(phrase(metric))}{_unit(metric)} {ARROWS[higher]}", r"95\% CI"]
    if with_delta_m:
        top.append(r"\multicolumn{2}{c}{}")
        sub += [r"$\Delta_m$ (\%) $\uparrow$", r"95\% CI"]
    rows = []
    for r in summary.to_dict("records"):
        n = str(r["done"]) if r["done"] == r["runs"] else f"{r['done']} of {r['runs']}"
        cells = [escape(r["variant"]) + (" (control)" if r["is_control"] else ""), n]
        for task in study.tasks:
            metric, _ = study.measure[task]
            mean = r[f"{task}.{metric}.mean"]
            if not _ok(mean):
                cells += ["--", "--"]
                continue
            spread = _or_dash(format_value(metric, r[f"{task}.{metric}.std"], reference=mean))
            text = rf"{format_value(metric, mean)} $\pm$ {spread}"
            if mean == best.get(task):
                text = rf"\textbf{{{text}}}"
            cells.append(text + marks.get((r["variant"], task), ""))
            cells.append(_interval(metric, r[f"{task}.{metric}.ci_low"], r[f"{task}.{metric}.ci_high"], mean))
        if with_delta_m:
            dm = r["delta_m"]
            cells.append(f"{dm:+.2f}" if _ok(dm) else ("control" if r["is_control"] else "--"))
            low, high = r["delta_m.ci_low"], r["delta_m.ci_high"]
            cells.append(f"[{low:+.2f}, {high:+.2f}]" if _ok(low) else "--")
        rows.append(cells)
    family = int(comparisons["holm_p"].notna().sum()) if not comparisons.empty else 0
    note = (
        "Test results over seeds: mean $\\pm$ sample std and 95\\% Student-$t$ interval of each task's primary "
        "metric (" + ", ".join(f"{escape(phrase(study.primary(t)))} for {escape(t)}" for t in study.tasks) + "; "
        r"$\uparrow$ higher is better, $\downarrow$ lower is better); percentages for accuracy, F1 and AUROC. "
        "Bold: the best mean of the column by its direction, among variants with two or more finished runs. "
    )
    if family:
        note += (
            f"{BETTER_MARK}\\,/\\,{WORSE_MARK}: better\\,/\\,worse than its control at Holm-adjusted $p < {ALPHA:g}$ "
            f"(paired $t$-test over seeds; family: the {family} comparisons with a defined test). "
        )
    if with_delta_m:
        note += (
            "$\\Delta_m$: mean relative change of each task's primary metric against the control, signed so that "
            "positive is better (Maninis et al., 2019), with its 95\\% seed-paired bootstrap interval. "
        )
    header = [" & ".join(top) + r" \\", " ".join(rules), " & ".join(sub) + r" \\"]
    spec = "lr" + "rr" * len(study.tasks) + ("rr" if with_delta_m else "")
    return _table(spec, header, rows, f"Test results of {escape(str(study.info.get('name') or ''))}", note, "summary")


def comparisons_latex(comparisons: pd.DataFrame) -> str:
    """Each variant against its control per task: Δ with its interval, d_z, p, Holm p, verdict (bold when
    significant)."""
    header = [
        r"Variant & Task & Control & $\Delta$ & 95\% CI & $d_z$ & $p$ & Holm $p$ & Verdict \\",
    ]
    words = {"win": "better", "loss": "worse", "tie": "n.s."}
    rows = []
    for r in comparisons.to_dict("records"):
        metric = r["metric"]
        significant = _ok(r["holm_p"]) and r["holm_p"] < ALPHA
        ref = r["control_mean"]
        diff = format_value(metric, r["diff_mean"], signed=True, reference=ref)
        unit_text = f" {difference_unit(metric)}" if difference_unit(metric) else ""
        verdict = words[r["verdict"]] if _ok(r["holm_p"]) else "--"
        rows.append([
            escape(r["variant"]),
            escape(r["task"]) + " " + ARROWS[bool(r["higher_is_better"])],
            escape(r["control"]),
            (rf"\textbf{{{_or_dash(diff)}}}" if significant else _or_dash(diff)) + unit_text,
            _interval(metric, r["diff_ci_low"], r["diff_ci_high"], ref, signed=True),
            f"{r['effect_size']:+.2f}" if _ok(r["effect_size"]) else "--",
            _or_dash(format_p(r["t_p"])),
            _or_dash(format_p(r["holm_p"])),
            rf"\textbf{{{verdict}}}" if significant else verdict,
        ])
    family = int(comparisons["holm_p"].notna().sum())
    note = (
        "Each variant minus its control on the task's primary test metric, paired by seed ($\\uparrow$ higher is "
        "better, $\\downarrow$ lower is better: a negative $\\Delta$ of a lower-is-better metric is an improvement); "
        "pp: percentage points. $d_z$: mean paired difference over its sd. Two-sided paired $t$-test; Holm $p$ "
        f"adjusted over the family of {family} comparisons with a defined test ('--': undefined, e.g. fewer than two "
        f"pairs or no spread). Bold: Holm $p < {ALPHA:g}$; n.s.: not significant."
    )
    return _table("lllrrrrrl", header, rows, "Each variant against its control", note, "comparisons")


def ranking_latex(study: StudyData, ranking: pd.DataFrame) -> str:
    """Variants by mean rank, with Δm, each task's primary mean and wins / ties / losses against the control."""
    tasks = study.tasks
    header = [
        "Rank & Variant & Mean rank & $\\Delta_m$ (\\%) & "
        + " & ".join(f"{escape(t)} {ARROWS[study.measure[t][1]]}" for t in tasks)
        + r" & W/T/L \\"
    ]
    rows = []
    for r in ranking.to_dict("records"):
        dm = r["delta_m"]
        wtl = f"{r['wins']}/{r['ties']}/{r['losses']}" if r["compared"] else ("control" if r["is_control"] else "--")
        rows.append([
            str(int(r["rank"])) if _ok(r["rank"]) else "--",
            escape(r["variant"]),
            f"{r['mean_rank']:.2f}" if _ok(r["mean_rank"]) else "not ranked",
            f"{dm:+.2f}" if _ok(dm) else "--",
            *(_or_dash(format_value(study.primary(t), r[f"{t}.{study.primary(t)}.mean"])) for t in tasks),
            wtl,
        ])
    note = (
        "Variants by mean rank (1 = best) over every (task, seed) cell of each task's primary test metric. "
        f"W/T/L: tasks better / not distinguishable / worse than the control at Holm-adjusted $p < {ALPHA:g}$. "
        + escape(ranking_caption_apart(ranking))
    ).strip()
    return _table("rlr" + "r" + "r" * len(tasks) + "l", header, rows, "Ranking of the variants", note, "ranking")


# ------------------------------------------------------------------------------------------------- internals


def significance_marks(comparisons: pd.DataFrame) -> dict[tuple[str, str], str]:
    """``{(variant, task): mark}`` for comparisons significant at the Holm-adjusted level, by direction."""
    if comparisons.empty:
        return {}
    marks = {}
    for r in comparisons.to_dict("records"):
        if r["verdict"] == "win":
            marks[(r["variant"], r["task"])] = BETTER_MARK
        elif r["verdict"] == "loss":
            marks[(r["variant"], r["task"])] = WORSE_MARK
    return marks


def best_means(study: StudyData, summary: pd.DataFrame) -> dict[str, float]:
    """Per task the best primary mean by its direction among the ranked variants (as the report's bold)."""
    candidates = ranked(summary)
    best = {}
    for task in study.tasks:
        metric, higher = study.measure[task]
        column = candidates[f"{task}.{metric}.mean"].dropna()
        if len(column):
            best[task] = float(column.max() if higher else column.min())
    return best


def _table(spec: str, header: list[str], rows: list[list[str]], caption: str, note: str, label: str) -> str:
    body = [" & ".join(cells) + r" \\" for cells in rows]
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        rf"\caption{{{caption}}}",
        rf"\label{{tab:mtlab-{label}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        *header,
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        "",
        rf"\par\smallskip\parbox{{\linewidth}}{{\footnotesize {note}}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _interval(metric: str, low: float, high: float, reference: float, *, signed: bool = False) -> str:
    if not _ok(low):
        return "--"
    lo = format_value(metric, low, reference=reference, signed=signed)
    hi = format_value(metric, high, reference=reference, signed=signed)
    return f"[{lo}, {hi}]"


def _unit(metric: str) -> str:
    return f" ({escape(unit(metric))})" if unit(metric) else ""


def _or_dash(text: str) -> str:
    return "--" if text == MISSING else escape(text)


def _ok(x: object) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))

