"""The pages and tables of the documentation site that come from mtlab itself, generated at build time.

A MkDocs hook module (``hooks:`` in ``mkdocs.yml``), so the site can never disagree with the code:

- a page's ``<!-- mtlab:NAME -->`` marker is replaced by the table or number :data:`MARKERS` names - the weighting
  methods from their registry (paper, options, what ``loss.weights`` mean, cost), the datasets from theirs (tasks,
  where to get the files, layout, licence), the built-in studies from their YAML files, counts of each;
- one page per built-in study, ``studies/<name>.md``, is written from its YAML file: the header comment (purpose,
  commands, runtimes, what the original found), its budgets with their runs, and its shipped report under
  ``docs/reports/<name>-<budget>/`` (the quick budget's, else another's) with the date it was generated.

The functions return Markdown text and take no MkDocs object, so ``tests/test_docs.py`` checks them without a build.
This module lives under ``docs/hooks/``, which ``mkdocs.yml`` leaves out of the site.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REPORTS = DOCS / "reports"
MARKER = re.compile(r"<!-- mtlab:([a-z-]+) -->")
COLUMNS = re.compile(r"\S {2,}\S")  # a line of a table in a study's header: aligned columns


def _cell(text: object) -> str:
    """One Markdown table cell: no line breaks, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ weighting methods


def method_cost(cls: Any) -> str:
    """What one training step of method ``cls`` costs beyond a plain weighted sum, from what the method declares to
    the training loop (``step``, ``samples``, ``needs_losses_after_step``, ``needs_meta_batch``)."""
    if getattr(cls, "step", "scalar") == "scalar":
        cost = "1 backward pass"
    else:
        samples = getattr(cls, "samples", 1)
        cost = "T backward passes" if samples == 1 else f"{samples}T backward passes (double sampling)"
    if getattr(cls, "needs_losses_after_step", False):
        cost += " + the losses after the step"
    if getattr(cls, "needs_meta_batch", False):
        cost += " + a look-ahead (about 4 forward, 2 backward)"
    return cost


def methods() -> list[dict[str, str]]:
    """One row per registered weighting method, in the registry's order (what ``mtlab weightings`` lists)."""
    from mtlab.cli.weightings_cmd import describe
    from mtlab.weighting import method_class

    rows = describe()
    for row in rows:
        cls = method_class(row["method"])
        row["cost"] = method_cost(cls)
        row["what"] = _what_method(cls) or row["paper"] or "-"
    return rows


def _what_method(cls: Any) -> str:
    """The first paragraph of the method module's docstring (what it does and its paper), without the leading name."""
    import sys

    text = _first_paragraph(sys.modules[cls.__module__].__doc__)
    return re.sub(r"^``[\w-]+``:\s*", "", text)


def methods_table() -> str:
    rows = [[f"`{r['method']}`", r["kind"], r["what"], r["options"], r["weights"], r["cost"]] for r in methods()]
    return _table(["method", "kind", "what it does (paper)", "options (defaults)", "`loss.weights`", "cost of a step"],
                  rows)


# ------------------------------------------------------------------------------------------------------- datasets


def _dataset_classes() -> list[tuple[str, Any]]:
    """Every registered dataset name with its options class (mtlab's own and plug-ins)."""
    from mtlab.config import RunConfig  # noqa: F401  (assembling the run config registers every built-in dataset)
    from mtlab.config.base import DATASETS

    return list(DATASETS.items())


def _first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph on one line, Sphinx roles (``:mod:`x` ``) as plain code."""
    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"``\1``", text)


def _instance(name: str, cls: Any) -> Any:
    """Dataset ``name``'s options as its own example section makes them (or with defaults), None if neither
    validates without the user's files."""
    import tempfile

    with tempfile.TemporaryDirectory() as workdir:
        sections: list[Any] = [{"dataset": name}]  # the defaults first: what the dataset reads unless told otherwise
        if callable(getattr(cls, "example", None)):
            with contextlib.suppress(Exception):  # an example that needs more than a folder: the defaults alone
                sections.append(cls.example(name, Path(workdir)))
        for section in sections:
            try:
                return cls.model_validate(section)
            except Exception:  # needs the user's files (a table's path): the class answers alone
                continue
    return None


def _users_own(cls: Any) -> bool:
    """Whether the dataset reads the user's own files and tasks (its options take a ``path`` and ``tasks``)."""
    return {"path", "tasks"} <= set(getattr(cls, "model_fields", {}))


def _tasks_of(cls: Any, options: Any) -> str:
    if _users_own(cls):
        return "yours, declared under `data.tasks`"
    try:
        types = options.task_types() if options is not None else {}
    except Exception:  # a dataset whose tasks only its files name
        types = {}
    if not types:
        return ", ".join(f"`{task}`" for task in getattr(cls, "offered_tasks", ())) or "-"
    if len(types) > 8:
        kinds = ", ".join(dict.fromkeys(types.values()))
        return f"{len(types)} tasks ({kinds}): `{next(iter(types))}`, ..."
    return ", ".join(f"`{task}` ({kind})" for task, kind in types.items())


def _sources_of(name: str, options: Any, registered: dict[str, Any]) -> list[Any]:
    """The file sources dataset ``name`` reads: as its options answer (``sources()``), or as the sources name their
    datasets."""
    if options is not None and callable(getattr(options, "sources", None)):
        try:
            return list(options.sources())
        except Exception:  # sources that depend on files not there: the sources' own lists
            pass
    return [s for s in registered.values() if name in getattr(s, "datasets", ())]


def datasets() -> list[dict[str, str]]:
    """One row per dataset: its tasks (and their types), what it is, where to get its files, their layout and
    licence - each as the dataset's options, the file sources it reads and its hand-placed record answer it."""
    from mtlab.data.placed import HAND_PLACED
    from mtlab.data.sources import SOURCES

    rows = []
    for name, cls in _dataset_classes():
        options = _instance(name, cls)
        sources = _sources_of(name, options, SOURCES)
        placed = HAND_PLACED.get(name)
        if sources:
            where = "; ".join(dict.fromkeys(_source_where(s) for s in sources))
            layout = "; ".join(dict.fromkeys(
                f"`{s.dirname}/`: " + ", ".join(f"`{f.name}`" for f in s.files) for s in sources if not s.embedded
            )) or "in the package"
        elif placed is not None:
            where = placed.obtain
            layout = f"`{placed.dirnames[0]}/`: " + ", ".join(f"`{m}`" for m in placed.markers)
        elif _users_own(cls):
            where, layout = "your own files", "the file `data.path` names"
        else:
            where, layout = "-", "-"
        records = [*sources, *([placed] if placed is not None else [])]
        licence = getattr(cls, "licence", "") or "; ".join(
            dict.fromkeys(r.licence for r in records if getattr(r, "licence", ""))
        ) or ("yours" if _users_own(cls) else "not stated by the dataset")
        rows.append({"dataset": name, "tasks": _tasks_of(cls, options), "what": _first_paragraph(cls.__doc__),
                     "where": where, "layout": layout, "licence": licence})
    return rows


def _source_where(source: Any) -> str:
    if source.embedded:
        return "embedded in mtlab"
    if source.archive is not None:
        return source.archive.urls[0]
    if source.mirrors:
        return source.mirrors[0]
    return source.hint


def datasets_table() -> str:
    rows = [[f"`{r['dataset']}`", r["tasks"], r["what"], r["where"], r["layout"], r["licence"]] for r in datasets()]
    return _table(["dataset", "tasks", "what", "where to get it", "layout", "licence"], rows)


# ----------------------------------------------------------------------------------------------------- task types


def task_types_table() -> str:
    """One row per registered task type: what it is, its metrics (primary first) with their directions, whether
    its outputs are maps (dense) and whether it has a confusion matrix - as ``mtlab tasks`` lists them."""
    import sys

    from mtlab.tasks import TASK_TYPES

    arrow = {"max": "↑", "min": "↓"}
    rows = []
    for name, kind in TASK_TYPES.items():
        metrics = [kind.primary, *(m for m in kind.metrics if m != kind.primary), "loss"]
        what = re.sub(r"^``[\w-]+``:\s*", "", _first_paragraph(sys.modules[type(kind).__module__].__doc__))
        rows.append([f"`{name}`", what, ", ".join(f"`{m}` {arrow[kind.direction(m)]}" for m in metrics),
                     "maps (B, O, H, W)" if kind.dense else "vectors (B, O)", "yes" if kind.has_confusion else "no"])
    return _table(["type", "what it is", "metrics (primary first)", "outputs", "confusion matrix"], rows)


# ---------------------------------------------------------------------------------------- model kinds and trunks


def _options_rows(registry_name: str, field: str) -> list[list[str]]:
    """``[name, what it is, its own options with defaults]`` of each plug-in of a model registry."""
    from mtlab.config import RunConfig, base  # noqa: F401  (assembling the run config registers the plug-ins)

    registry = getattr(base, registry_name)
    common = set(base.ModelKind.model_fields) if registry_name == "MODEL_KINDS" else set()
    rows = []
    for name, cls in registry.items():
        options = []
        for key, info in cls.model_fields.items():
            if key == field or key in common:
                continue
            if info.is_required():
                options.append(f"`{key}` (required)")
                continue
            default = info.default_factory() if callable(info.default_factory) else info.default
            options.append(f"`{key}: {_yaml(default)}`")
        rows.append([f"`{name}`", _first_paragraph(cls.__doc__), ", ".join(options) or "-"])
    return rows


def _yaml(value: Any) -> str:
    """A default as a config would write it, in YAML's flow style."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("\n...").strip()


def model_kinds_table() -> str:
    return _table(["`model.kind`", "what it is", "its own options (defaults)"], _options_rows("MODEL_KINDS", "kind"))


def trunks_table() -> str:
    from mtlab.config import base

    registry = "TRUNKS" if hasattr(base, "TRUNKS") else "TRUNK_TYPES"
    return _table(["`model.trunk.type`", "what it is", "options (defaults)"], _options_rows(registry, "type"))


# -------------------------------------------------------------------------------------------------------- studies


def studies() -> dict[str, Path]:
    from mtlab.study.catalog import builtin_study_paths

    return dict(sorted(builtin_study_paths().items()))


def report_of(name: str) -> tuple[str, str, str] | None:
    """``(folder, date, budget)`` of the report shipped for study ``name`` - ``docs/reports/<name>-<budget>``, the
    quick budget's first, else the first of its budgets that has one (multi-mnist: Sener & Koltun's) - or None."""
    from mtlab.study.catalog import find_study

    spec, _ = find_study(name)
    for budget in sorted(spec.budgets, key=lambda b: b != "quick"):
        markdown = REPORTS / f"{name}-{budget}" / "report.md"
        if markdown.is_file():
            found = re.search(r"\*\*Generated:\*\* (\d{4}-\d{2}-\d{2})", markdown.read_text(encoding="utf-8"))
            return markdown.parent.name, found[1] if found else "undated", budget
    return None


def studies_table(page: str = "index.md") -> str:
    """The table of built-in studies, its links relative to ``page`` (a path under ``docs/``)."""
    from mtlab.study.outline import read_outline

    up = "../" * page.count("/")

    rows = []
    for name, path in studies().items():
        outline = read_outline(path)
        runs = ", ".join(f"{budget} {n}" for budget, n in outline.runs.items())
        report = report_of(name)
        shipped = f"[{report[1]}]({up}reports/{report[0]}/report.html) ({report[2]})" if report else "-"
        rows.append([f"[`{name}`]({up}studies/{name}.md)", outline.description, runs, shipped])
    return _table(["study", "what it asks", "runs per budget", "shipped report"], rows)


def header_of(path: Path) -> list[str]:
    """The comment lines a study file opens with, without their ``#`` (the study's own documentation)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return lines


def _header_markdown(lines: list[str]) -> str:
    """A study header as Markdown: prose paragraphs joined, indented lines kept as they are (commands in a ``bash``
    block, tables and lists of options in a plain one)."""
    out: list[str] = []
    prose: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if prose:
            out.append(" ".join(prose) + "\n")
            prose.clear()
        if block:
            text = textwrap.dedent("\n".join(block))
            language = "bash" if any(line.strip().startswith("mtlab ") for line in block) else "text"
            out.append(f"```{language}\n{text}\n```\n")
            block.clear()

    for line in lines:
        if not line.strip():
            flush()
        elif line.startswith("  ") or (block and (line.startswith(" ") or COLUMNS.search(line))):
            if prose:
                flush()
            block.append(line)
        else:
            if block:
                flush()
            prose.append(line.strip())
    flush()
    return "\n".join(out)


def study_page(name: str, path: Path) -> str:
    """The page of one built-in study, from its YAML file alone."""
    from mtlab.study.outline import read_outline

    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    lines = header_of(path)
    title, _, purpose = (lines[0] if lines else name).partition(":")
    parts = [f"# {title.strip() or name}\n", f"**{purpose.strip()}**\n" if purpose.strip() else "",
             _header_markdown(lines[1:])]
    outline = read_outline(path)
    budgets = raw.get("budgets") or {}
    rows = []
    for budget, runs in outline.runs.items():
        options = budgets.get(budget) or {}
        default = " (default)" if budget == raw.get("default_budget") else ""
        seeds = options.get("seeds", raw.get("seeds", 3))
        rows.append([f"`{budget}`{default}", options.get("description", "-"), seeds, runs])
    parts += ["## Budgets\n", f"`mtlab run {name} --budget NAME`; runs = variants x grid points x seeds.\n",
              _table(["budget", "what it trains", "seeds", "runs"], rows)]
    reference = raw.get("reference") or {}
    if reference.get("source"):
        said = [f"Source: {reference['source'].rstrip('.')}."]
        if reference.get("measure"):
            said.append(f"Measure: {reference['measure'].rstrip('.')}.")
        if reference.get("budget"):
            said.append(f"The budget that follows its protocol: `{reference['budget']}`.")
        parts += ["## The original study\n", " ".join(said) + "\n"]
        claims = [c.get("claim") for c in reference.get("claims") or [] if isinstance(c, dict)]
        if claims:
            parts += ["Its claims, which the report checks on paired seeds:\n",
                      "\n".join(f"- {c}" for c in claims) + "\n"]
    report = report_of(name)
    parts.append("## Shipped report\n")
    if report:
        parts.append(f"The {report[2]} budget's report, generated on {report[1]}: "
                     f"[report.html](../reports/{report[0]}/report.html) (self-contained; figures and tables). "
                     "It compares what mtlab had on that date; rerun the command above for today's.\n")
    else:
        parts.append("None shipped: this study's data cannot be downloaded on the machines that render the reports; "
                     "its runs are tested end to end on synthetic files in the official layout.\n")
    parts.append(f"The study file: `src/mtlab/studies/{path.name}` (`mtlab studies` lists every study).\n")
    return "\n".join(part for part in parts if part)


def study_pages() -> dict[str, str]:
    """``studies/<name>.md`` -> its Markdown, for every built-in study."""
    return {f"studies/{name}.md": study_page(name, path) for name, path in studies().items()}


# --------------------------------------------------------------------------------------------------------- counts


def count_methods() -> str:
    from mtlab.weighting import registered_methods

    return str(len(registered_methods()))


def count_datasets() -> str:
    return str(len(_dataset_classes()))


def count_studies() -> str:
    return str(len(studies()))


def count_task_types() -> str:
    from mtlab.tasks import TASK_TYPES

    return str(len(TASK_TYPES.names()))


def count_model_kinds() -> str:
    from mtlab.config import RunConfig  # noqa: F401  (assembling the run config registers every built-in kind)
    from mtlab.config.base import MODEL_KINDS

    return str(len(MODEL_KINDS.names()))


MARKERS: dict[str, Callable[..., str]] = {
    "methods-table": methods_table,
    "datasets-table": datasets_table,
    "studies-table": studies_table,
    "task-types-table": task_types_table,
    "model-kinds-table": model_kinds_table,
    "trunks-table": trunks_table,
    "count-methods": count_methods,
    "count-datasets": count_datasets,
    "count-studies": count_studies,
    "count-task-types": count_task_types,
    "count-model-kinds": count_model_kinds,
}


def fill(markdown: str, where: str = "index.md") -> str:
    """``markdown`` (the page ``where``, a path under ``docs/``) with every ``<!-- mtlab:NAME -->`` marker replaced;
    an unknown marker is an error."""

    def replace(match: re.Match[str]) -> str:
        if match[1] not in MARKERS:
            raise ValueError(f"{where}: unknown marker <!-- mtlab:{match[1]} -->; known: {sorted(MARKERS)}")
        make = MARKERS[match[1]]
        return (make(where) if make is studies_table else make()).rstrip("\n")

    return MARKER.sub(replace, markdown)


# ---------------------------------------------------------------------------------------------------- MkDocs hooks


def on_config(config: Any) -> Any:
    """Each study's generated page goes into the navigation, under "Built-in studies"."""
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and "Built-in studies" in entry:
            entry["Built-in studies"] = [entry["Built-in studies"][0],
                                         *[{name: f"studies/{name}.md"} for name in studies()]]
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for uri, text in study_pages().items():
        files.append(File.generated(config, uri, content=text))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return fill(markdown, page.file.src_uri)
