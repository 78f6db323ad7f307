"""Write a page - a list of :mod:`~mtlab.pages.blocks` - as Markdown (figures as relative links) and as one
self-contained HTML file (figures embedded as base64 data URIs, plain inline CSS, no JavaScript, no network)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from mtlab.pages.blocks import Block, Bullets, Cell, Code, Facts, Heading, SavedFigure, SkippedFigure, Table, Text

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
