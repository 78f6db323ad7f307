"""Write a study's report: ``report.md`` beside ``figures/*.png`` (or ``.svg``, or ``.pdf`` beside the PNGs), and a
self-contained ``report.html``.

The content is decided once, as a list of blocks (:func:`report_blocks`), and written twice: as Markdown for
reading in a repository or editor, and as one HTML file with the figures embedded as base64 data URIs and plain
inline CSS, so it can be mailed or opened offline with nothing else beside it (no JavaScript, no network).
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mtlab import atomic
from mtlab.pages.blocks import Block, Bullets, Code, Facts, Heading, SavedFigure, SkippedFigure, Text
from mtlab.pages.render import to_html, to_markdown
from mtlab.report.figures import make_figures
from mtlab.report.frontier import frontier_table
from mtlab.report.published import published_blocks
from mtlab.report.reference import reference_blocks
from mtlab.report.selection import selection_blocks
from mtlab.report.stats import ALPHA
from mtlab.report.tables import (
    DELTA_M_DEFINITION,
    StudyData,
    beats_control,
    comparison_frame,
    comparison_table,
    failed_frame,
    failed_table,
    format_p,
    load_study,
    no_ranking_reason,
    ranked,
    ranking_frame,
    ranking_table,
    store_path,
    summary_frame,
    summary_table,
)
from mtlab.report.units import format_value, phrase
from mtlab.study.definition import format_overrides
from mtlab.study.store import DATA_NOTES, ResultStore

UNKNOWN = "not recorded"


def build_report(directory: Path, figure_format: str | None = None) -> dict[str, Path]:
    """Rebuild ``<directory>/report.md``, ``report.html`` and ``figures/`` from the study's store alone, the figures
    as ``figure_format`` (:data:`~mtlab.report.FIGURE_FORMATS`: png; svg, which the HTML embeds as vectors; or pdf,
    written beside PNGs the HTML embeds). The format is remembered in the store: None means the directory's last
    one (png for a study never reported), so a resumed ``mtlab run`` keeps the figures a ``mtlab report`` chose."""
    directory = Path(directory)
    figure_format = remembered_figure_format(directory, figure_format)
    study = load_study(directory)
    summary = summary_frame(study)
    comparisons = comparison_frame(study)
    figures_dir = directory / "figures"
    figures = make_figures(study, summary, figures_dir, figure_format)
    blocks = report_blocks(study, summary, comparisons, figures)
    md_path, html_path = directory / "report.md", directory / "report.html"
    atomic.write_text(md_path, to_markdown(blocks, directory))
    atomic.write_text(html_path, to_html(blocks, title=f"{study.info.get('name', directory.name)} — mtlab report"))
    return {"md": md_path, "html": html_path, "figures": figures_dir}


def remembered_figure_format(directory: Path, asked: str | None) -> str:
    """The figure format to write: ``asked`` (then stored as the directory's), else the stored one, else png."""
    with ResultStore(store_path(directory)) as store:
        if asked is not None:
            if store.info().get(FIGURE_FORMAT_KEY) != asked:
                store.set_info(**{FIGURE_FORMAT_KEY: asked})
            return asked
        return str(store.info().get(FIGURE_FORMAT_KEY) or "png")


FIGURE_FORMAT_KEY = "figure_format"
"""The study info key that holds the directory's figure format (the last one asked for)."""


def report_blocks(
    study: StudyData, summary: pd.DataFrame, comparisons: pd.DataFrame, figures: list[SavedFigure | SkippedFigure]
) -> list[Block]:
    info = study.info
    counts = study.status_counts()
    unfinished = counts["pending"] + counts["running"]
    blocks: list[Block] = [Heading(str(info.get("name") or study.directory.name), 1)]
    if info.get("description"):
        blocks.append(Text(str(info["description"])))
    blocks.append(
        Facts(
            [
                ("Budget", str(info.get("budget") or "default")),
                ("Overrides", format_overrides(info.get("overrides"))),
                ("Runs", f"{len(study.runs)} in {len(study.variants)} variants"),
                ("Done", str(counts["done"])),
                ("Failed", str(counts["failed"])),
                ("Pending", str(unfinished) + (f" ({counts['running']} running)" if counts["running"] else "")),
                ("Generated", time.strftime("%Y-%m-%d %H:%M")),
                *([("Superseded", _superseded_text(study))] if study.superseded else []),
            ],
            cards=True,
        )
    )
    if unfinished or counts["failed"]:
        blocks.append(Text("This study is incomplete: the numbers below use the finished runs only.", muted=True))
    if study.superseded:
        blocks.append(Text("Superseded: the runs of earlier definitions of this directory stay in the store, out of "
                           "the numbers below (see Earlier definitions, after Reproduction).", muted=True))  # fmt: skip
    blocks += [Text(note, muted=True) for note in study.notes]
    blocks += [Text(f"Data: {note}.", muted=True) for note in info.get(DATA_NOTES) or []]

    blocks.append(Heading("Summary"))
    if counts["done"] == 0:
        blocks.append(Text("No run has finished yet."))
    else:
        blocks.append(Bullets(highlights(study, summary, comparisons)))
    if not comparisons.empty:
        blocks.append(Text(verdict_sentence(comparisons)))
    ranking = ranking_frame(study, summary, comparisons)
    if len(ranking):
        blocks += [Heading("Ranking", 3), ranking_table(study, ranking, comparisons)]
        blocks.append(Heading("All variants", 3))
    elif counts["done"] and (reason := no_ranking_reason(study, summary)):
        blocks.append(Text(reason, muted=True))
    blocks.append(summary_table(study, summary))
    if summary["delta_m"].notna().any():
        blocks.append(Text(DELTA_M_DEFINITION, muted=True))
    if counts["done"]:
        blocks.append(Text(timings_note(info.get("timings")), muted=True))

    blocks.append(Heading("Comparisons"))
    if comparisons.empty:
        blocks.append(
            Text(
                "No comparisons: the study names no control, or no variant and its control have both finished a run.",
                muted=True,
            )
        )
    else:
        blocks.append(comparison_table(comparisons))

    blocks += reference_blocks(study)  # "Against the original study", when the spec has a reference
    blocks += published_blocks(study)  # "The papers' tables", when the reference carries them
    blocks += selection_blocks(study)  # "Two selections", when runs recorded test metrics every epoch

    frontier = frontier_table(study)
    if frontier is not None:  # two or three tasks: hypervolume and the static scalarisation front
        table, text = frontier
        blocks += [Heading("Trade-offs"), Text(text), table]

    blocks.append(Heading("Figures"))
    blocks += figures or [Text("No figures yet: no run has finished.", muted=True)]

    failed = failed_frame(study)
    blocks.append(Heading("Failed runs"))
    blocks.append(failed_table(failed) if len(failed) else Text("None.", muted=True))

    blocks += reproduction_blocks(study)
    blocks += earlier_definition_blocks(study)
    return blocks


def _superseded_text(study: StudyData) -> str:
    kept = study.superseded
    return f"{sum(kept.values())} runs kept ({kept.get('done', 0)} finished)"


def earlier_definition_blocks(study: StudyData) -> list[Block]:
    """The definitions ``mtlab run --redefine`` replaced, oldest first: what they ran and what the store keeps."""
    earlier = study.info.get("superseded") or []
    if not earlier:
        return []
    blocks: list[Block] = [
        Heading("Earlier definitions", 3),
        Text(
            "This directory was redefined (`mtlab run --redefine`). The tables above cover the current definition's "
            "runs only; the runs of the definitions below that it does not share stay in the store, finished ones "
            "included. To report on one again, run its command with --redefine (its finished runs are not trained "
            "again).",
            muted=True,
        ),
    ]
    for number, entry in enumerate(earlier, 1):
        command = shlex.join(entry.get("command") or []) or UNKNOWN
        blocks.append(
            Facts(
                [
                    ("Definition", f"{number} of {len(earlier) + 1}, replaced {entry.get('replaced') or UNKNOWN}"),
                    ("Budget", str(entry.get("budget") or "default")),
                    ("Overrides", format_overrides(entry.get("overrides"))),
                    ("Runs", f"{entry.get('runs', 0)} ({entry.get('done', 0)} finished); {entry.get('kept', 0)} "
                             f"not in the next definition ({entry.get('kept_done', 0)} finished)"),
                    ("Command", command),
                ]
            )
        )
    return blocks


def highlights(study: StudyData, summary: pd.DataFrame, comparisons: pd.DataFrame) -> list[str]:
    """One sentence per task: the best variant on the task's primary metric (by its direction), its value with n,
    and how it compares with its control."""
    lines = []
    candidates = ranked(summary)
    for task in study.tasks:
        metric, higher = study.measure[task]
        column = candidates[f"{task}.{metric}.mean"]
        if column.notna().sum() == 0:
            continue
        best = candidates.loc[column.idxmax() if higher else column.idxmin()]
        mean, std = best[f"{task}.{metric}.mean"], best[f"{task}.{metric}.std"]
        spread = f" ± {format_value(metric, std, reference=mean)}" if pd.notna(std) else ""
        value = format_value(metric, mean, with_unit=True)
        what = "" if metric == "acc" else f"{phrase(metric)} "  # accuracy goes without saying, as it always has
        line = f"{task}: best is {best['variant']} at {what}{value}{spread} (n={best['done']})"
        vs = comparisons[(comparisons["variant"] == best["variant"]) & (comparisons["task"] == task)]
        if len(vs):
            c = vs.iloc[0]
            diff = format_value(metric, c["diff_mean"], signed=True, with_unit=True)
            undefined = c.get("undefined")
            test = f"paired t-test undefined: {undefined}" if undefined else f"paired t p = {format_p(c['t_p'])}"
            line += f", {diff} vs {c['control']} ({test})"
        elif best["is_control"]:
            line += ", the control itself"
        lines.append(line + ".")
    return lines


def _executor_text(executor: dict | None, run_envs: list[dict]) -> str:
    """How the runs were trained: executor, workers x threads (as the last driver described it), worker processes."""
    threads = sorted({int(e["cpu_threads"]) for e in run_envs if e.get("cpu_threads")})
    per_run = f"; {'/'.join(map(str, threads))} thread(s) per run" if threads else ""
    workers = len({e["worker"] for e in run_envs if e.get("worker")})
    processes = f", {workers} worker process(es) trained the runs" if workers else ""
    if not executor:
        return UNKNOWN + per_run
    where = f" at {executor['address']}" if executor.get("address") else ""
    return (
        f"{executor.get('executor')}{where}: {executor.get('workers')} worker(s) x {executor.get('threads')} "
        f"thread(s){processes}{per_run}"
    )


def machine_text(context: dict) -> str:
    """``AMD EPYC (avx, avx2, fma, torch AVX2), 2 cores, torch 2 threads, local: 1 worker(s) x 2 thread(s), load
    average 0.52 / 0.61 / 0.7 at the start (2026-12-03 10:57:31 UTC)``: one start of training (see
    :func:`mtlab.environment.timing_context`)."""
    capability = context.get("torch_cpu_capability")  # the vector code torch runs: DEFAULT, AVX2, AVX512...
    flags = [*context.get("cpu_flags", []), *([f"torch {capability}"] if capability else [])]
    cpu = str(context.get("cpu") or "unknown CPU") + (f" ({', '.join(flags)})" if flags else "")
    load = context.get("load_average")
    load_text = f"load average {' / '.join(f'{x:g}' for x in load)} at the start" if load else "load not known"
    return (
        f"{cpu}, {context.get('cores')} cores, torch {context.get('torch_threads')} threads, "
        f"{context.get('executor')}: {context.get('workers')} worker(s) x {context.get('threads_per_worker')} "
        f"thread(s), {load_text} ({context.get('started')})"
    )


def timings_note(timings: list[dict] | None) -> str:
    """What the report's times (per run, per step) were measured on - every start of training, as the store recorded
    it - and the warning that goes with them."""
    if not timings:
        measured = "Times were measured on a machine this store does not describe (it predates that record)"
    elif len(timings) == 1:
        measured = f"Times were measured on {machine_text(timings[0])}"
    else:
        sessions = "; ".join(f"{i}. {machine_text(t)}" for i, t in enumerate(timings, 1))
        measured = f"Times were measured over {len(timings)} starts of training: {sessions}"
    return (
        f"{measured}. Times are not comparable across machines, thread counts or loads: compare them within "
        "one study run on one machine."
    )


def verdict_sentence(comparisons: pd.DataFrame) -> str:
    """Plainly: does any variant beat its control at the Holm-adjusted level, and is any worse?"""
    family = len(comparisons["holm_p"].dropna())
    undefined = len(comparisons) - family
    better, worse = beats_control(comparisons)
    left_out = f"; {undefined} undefined, left out" if undefined else ""
    level = (
        f"At the Holm-adjusted {ALPHA:g} level over the {family} comparisons with a control (paired t-tests{left_out})"
    )
    found = f"{level}, " + (
        f"{len(better)} beat their control: {', '.join(better)}"
        if better
        else "no variant beats its control on any task"
    )
    found += f"; {len(worse)} are worse: {', '.join(worse)}." if worse else "; none is worse."
    return found


def reproduction_blocks(study: StudyData) -> list[Block]:
    info = study.info
    command = info.get("command") or []
    env = info.get("environment") or {}
    versions = env.get("versions") or {}
    run_envs = [e for e in study.runs["environment"].dropna().map(_json) if isinstance(e, dict)]
    devices = sorted({str(e["device"]) for e in run_envs if e.get("device")}) or [env.get("device") or UNKNOWN]
    shas = sorted({str(e["git_sha"]) for e in run_envs if e.get("git_sha")}) or [env.get("git_sha") or UNKNOWN]
    blocks: list[Block] = [
        Heading("Reproduction"),
        Text("The command that ran this study (run it again to resume; finished runs are not trained again):"),
        Code(shlex.join(command) if command else UNKNOWN, "sh"),
        Text("Rebuild this report without training:"),
        Code(shlex.join(["mtlab", "report", str(study.directory)]), "sh"),
        Heading("Environment", 3),
        Facts(
            [
                ("Git commit", ", ".join(shas)),
                ("Device", ", ".join(devices)),
                ("Executed by", _executor_text(info.get("executor"), run_envs)),
                *(
                    (f"Training started{f' ({i})' if len(info['timings']) > 1 else ''}", machine_text(context))
                    for i, context in enumerate(info.get("timings") or [], 1)
                ),
                ("Platform", str(env.get("platform") or UNKNOWN)),
                *((name, str(version or "not installed")) for name, version in versions.items()),
            ]
        ),
    ]
    if len(shas) > 1:  # a study resumed after a code change: its runs may not be comparable
        blocks.append(Text("Runs were trained at different commits; compare with care.", muted=True))
    if "spec" in info:
        blocks += [Heading("Study spec as run", 3), Code(yaml.safe_dump(info["spec"], sort_keys=False), "yaml")]
    return blocks


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
