"""Write a study's report: ``report.md`` beside ``figures/*.png`` (or ``.svg``, or ``.pdf`` beside the PNGs), and a
self-contained ``report.html``.

The content is decided once, as a list of blocks (:func:`report_blocks`), and written twice: as Markdown for
reading in a repository or editor, and as one HTML file with the figures embedded as base64 data URIs and plain
inline CSS, so it can be mailed or opened offline with nothing else beside it (no JavaScript, no network).
"""

from __future__ import annotations

import base64
import html
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mtlab import atomic
from mtlab.analysis.stats import ALPHA
from mtlab.report.figures import SavedFigure, SkippedFigure, make_figures
from mtlab.report.frontier import frontier_table
from mtlab.report.reference import reference_blocks
from mtlab.report.tables import (
    DELTA_M_DEFINITION,
    Cell,
    StudyData,
    Table,
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


# ------------------------------------------------------------------------------------------------------ blocks


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str
    muted: bool = False


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Facts:
    """Key-value pairs: the header's run counts (``cards``) or the environment (a plain list)."""

    items: list[tuple[str, str]]
    cards: bool = False


@dataclass
class Code:
    text: str
    language: str = ""


Block = Heading | Text | Bullets | Facts | Code | Table | SavedFigure | SkippedFigure


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


# ---------------------------------------------------------------------------------------------------- markdown


def to_markdown(blocks: list[Block], directory: Path) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Text):
            out.append(f"*{block.text}*" if block.muted else block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Facts):
            out.append("\n".join(f"- **{k}:** {v}" for k, v in block.items))
        elif isinstance(block, Code):
            out.append(f"```{block.language}\n{block.text.rstrip()}\n```")
        elif isinstance(block, Table):
            out.append(_md_table(block))
        elif isinstance(block, SavedFigure):
            extra = "".join(
                f" [{p.suffix.lstrip('.').upper()}]({p.relative_to(directory).as_posix()})" for p in block.extra
            )
            out.append(
                f"### {block.title}\n\n![{block.title}]({block.path.relative_to(directory).as_posix()})\n\n"
                f"*{block.caption}*" + (f"\n\nAlso as{extra}." if extra else "")
            )
        elif isinstance(block, SkippedFigure):
            out.append(f"### {block.title}\n\n*{block.text}*")
    return "\n\n".join(out) + "\n"


def _md_table(table: Table) -> str:
    def cell(c: Cell) -> str:
        text = c.plain.replace("|", "\\|")
        if c.kind == "code":
            return f"`{text}`"
        return f"**{text}**" if c.strong else text

    align = [("---:" if kind == "number" else ":---") for kind in _column_kinds(table)]
    lines = [
        "| " + " | ".join(h.replace("|", "\\|") for h in table.headers) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows),
    ]
    return "\n".join(lines) + (f"\n\n*{table.caption}*" if table.caption else "")


def _column_kinds(table: Table) -> list[str]:
    return [c.kind for c in table.rows[0]] if table.rows else ["text"] * len(table.headers)


# -------------------------------------------------------------------------------------------------------- html

CSS = """
:root { --ink: #1f2328; --muted: #656d76; --line: #d8dee4; --soft: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; background: #eef1f4; color: var(--ink); line-height: 1.5;
  font: 15px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1180px; margin: 24px auto; padding: 32px 40px 48px; background: #fff;
  border-radius: 10px; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
h1 { font-size: 28px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 24px 0 8px; }
p { margin: 8px 0; }
.muted { color: var(--muted); font-style: italic; }
nav { margin: 12px 0 4px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 16px; }
.facts { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0; padding: 0; }
.facts div { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: 6px 14px; }
.facts dt { font-size: 11px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); }
.facts dd { margin: 0; font-weight: 600; font-size: 15px; }
.facts .failed dd { color: #cf222e; } .facts .pending dd { color: #9a6700; } .facts .done dd { color: #1a7f37; }
ul.highlights { margin: 8px 0 16px; padding-left: 22px; }
.table-wrap { overflow-x: auto; margin: 12px 0 4px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th { background: var(--soft); text-align: left; font-weight: 600; padding: 8px 10px;
  border-bottom: 2px solid var(--line); vertical-align: bottom; }
td { padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
tbody tr:nth-child(even) td { background: #fafbfc; }
tbody tr:hover td { background: #eef5ff; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 13px; }
td .note { display: block; color: var(--muted); font-size: 12px; }
td strong { color: #0b4f9c; }
td.text { max-width: 520px; }
.caption { color: var(--muted); font-size: 13px; margin: 6px 0 0; }
figure { margin: 20px 0 28px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px;
  overflow-x: auto; font: 13px/1.45 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
dl.env { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; font-size: 14px; }
dl.env dt { color: var(--muted); } dl.env dd { margin: 0; font-family: ui-monospace, Menlo, Consolas, monospace; }
"""


def to_html(blocks: list[Block], title: str) -> str:
    body: list[str] = []
    sections = [b.text for b in blocks if isinstance(b, Heading) and b.level == 2]
    for block in blocks:
        body.append(_html_block(block))
        if isinstance(block, Heading) and block.level == 1:
            body.append("<nav>" + "".join(f'<a href="#{_anchor(s)}">{_esc(s)}</a>' for s in sections) + "</nav>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        anchor = f' id="{_anchor(block.text)}"' if block.level == 2 else ""
        return f"<h{block.level}{anchor}>{_esc(block.text)}</h{block.level}>"
    if isinstance(block, Text):
        return f'<p class="muted">{_esc(block.text)}</p>' if block.muted else f"<p>{_esc(block.text)}</p>"
    if isinstance(block, Bullets):
        return '<ul class="highlights">' + "".join(f"<li>{_esc(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Facts):
        return _html_facts(block)
    if isinstance(block, Code):
        return f"<pre><code>{_esc(block.text.rstrip())}</code></pre>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, SavedFigure):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        mime = IMAGE_TYPES[block.path.suffix]
        return (
            f'<figure><h3>{_esc(block.title)}</h3><img src="data:{mime};base64,{data}" '
            f'alt="{_esc(block.title)}"><figcaption>{_esc(block.caption)}</figcaption></figure>'
        )
    if isinstance(block, SkippedFigure):
        return f'<h3>{_esc(block.title)}</h3><p class="muted">{_esc(block.text)}</p>'
    raise TypeError(f"unknown report block {type(block).__name__}")


# An SVG goes into an <img> as a data URI (not inline): each figure keeps its own element ids and styles, which
# inline SVGs of one page would share, and no figure can run script.
IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}


def _html_facts(facts: Facts) -> str:
    if facts.cards:
        items = "".join(f'<div class="{_anchor(k)}"><dt>{_esc(k)}</dt><dd>{_esc(v)}</dd></div>' for k, v in facts.items)
        return f'<dl class="facts">{items}</dl>'
    return '<dl class="env">' + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in facts.items) + "</dl>"


def _html_table(table: Table) -> str:
    kinds = _column_kinds(table)
    head = "".join(f'<th class="{kind}">{_esc(h)}</th>' for h, kind in zip(table.headers, kinds, strict=True))
    rows = []
    for row in table.rows:
        cells = []
        for c in row:
            text = f"<strong>{_esc(c.text)}</strong>" if c.strong else _esc(c.text)
            note = f'<span class="note">{_esc(c.note)}</span>' if c.note else ""
            cells.append(f'<td class="{c.kind}">{text}{note}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption = f'<p class="caption">{_esc(table.caption)}</p>' if table.caption else ""
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        f"</table></div>{caption}"
    )


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def _anchor(text: str) -> str:
    return "-".join(text.lower().split())
