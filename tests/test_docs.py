"""Documentation that cannot rot: the site's generated pages say what the registries say, every config block of
the README and the pages validates (whole ones train), every command block marked runnable runs, and the API
reference documents exactly the public names.

Markers a page uses (the fence's info string, which GitHub and MkDocs both read):

- ```` ```yaml title="fragment" ````: part of a config (one section, a grid): checked to be YAML and no more;
- ```` ```yaml ````: a whole run config (validated and trained for one epoch) or a whole study (expanded);
- ```` ```bash title="runnable" ````: every line runs, as written plus a tiny budget for ``mtlab train``
  (:func:`commands`).
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DOCUMENTS = [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*.md") if "reports" not in p.relative_to(DOCS).parts)]
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", flags=re.M | re.S)
TINY = ["train.epochs=1", "train.threads=1", "data.train_subset=200", "data.test_subset=100"]


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generated", DOCS / "hooks" / "generated.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generated = _generator()


def blocks(language: str) -> list[tuple[str, str, str]]:
    """``(where, info, text)`` of every fenced block of ``language`` in the README and the pages."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match[1] == language:
                line = text[: match.start()].count("\n") + 1
                found.append((f"{document.relative_to(ROOT)}:{line}", match[2], match[3]))
    return found


# ----------------------------------------------------------------------------------- 1. pages from the registries


def test_the_methods_table_has_one_row_per_registered_method():
    from mtlab.weighting import registered_methods

    table = generated.methods_table()
    rows = re.findall(r"^\| `([\w-]+)` \|", table, flags=re.M)
    assert rows == registered_methods()
    assert generated.count_methods() == str(len(registered_methods()))
    fixed = next(line for line in table.splitlines() if line.startswith("| `fixed` |"))
    assert "linear scalarisation" in fixed
    assert "| 1 backward pass |" in fixed


def test_the_datasets_table_has_one_row_per_registered_dataset():
    from mtlab.config import RunConfig  # noqa: F401  (every built-in dataset registered)
    from mtlab.config.base import DATASETS

    rows = re.findall(r"^\| `([\w-]+)` \|", generated.datasets_table(), flags=re.M)
    assert rows == DATASETS.names()
    assert generated.count_datasets() == str(len(DATASETS.names()))
    mnist = next(row for row in generated.datasets() if row["dataset"] == "mnist")
    assert mnist["tasks"] == "`digit` (multiclass)"
    assert "train-images-idx3-ubyte" in mnist["layout"]
    licences = {row["dataset"]: row["licence"] for row in generated.datasets()}
    assert licences["mnist"] == licences["mnist-sample"] == "CC BY-SA 3.0 (LeCun & Cortes)"  # the files' sources say
    assert set(licences["multi-fashion-mnist"].split("; ")) == {"CC BY-SA 3.0 (LeCun & Cortes)", "MIT (Zalando SE)"}
    assert "non-commercial" in licences["celeba"]  # the hand-placed record says
    assert licences["table"] == "yours"


def test_the_task_types_table_has_one_row_per_registered_type():
    from mtlab.tasks import TASK_TYPES

    table = generated.task_types_table()
    assert re.findall(r"^\| `([\w-]+)` \|", table, flags=re.M) == TASK_TYPES.names()
    regression = next(line for line in table.splitlines() if line.startswith("| `regression` |"))
    assert "`mae` ↓" in regression
    assert generated.count_task_types() == str(len(TASK_TYPES.names()))


def test_the_architecture_tables_have_one_row_per_registered_kind_and_trunk():
    from mtlab.config import RunConfig, base  # noqa: F401  (assembling the run config registers the plug-ins)

    kinds = re.findall(r"^\| `([\w-]+)` \|", generated.model_kinds_table(), flags=re.M)
    assert kinds == base.MODEL_KINDS.names()
    assert generated.count_model_kinds() == str(len(kinds))
    trunks = base.TRUNKS if hasattr(base, "TRUNKS") else base.TRUNK_TYPES
    table = generated.trunks_table()
    assert re.findall(r"^\| `([\w-]+)` \|", table, flags=re.M) == trunks.names()
    assert "`conv` (required)" in next(line for line in table.splitlines() if line.startswith("| `cnn` |"))


def test_every_built_in_study_has_a_page_saying_what_its_file_says():
    from mtlab.study.catalog import builtin_study_paths
    from mtlab.study.outline import read_outline

    pages = generated.study_pages()
    assert sorted(pages) == sorted(f"studies/{name}.md" for name in builtin_study_paths())
    for name, path in builtin_study_paths().items():
        page = pages[f"studies/{name}.md"]
        assert page.startswith(f"# {name}\n")
        for line in generated.header_of(path):  # every command of the header, as written
            if line.strip().startswith("mtlab "):
                assert line.strip() in page, (name, line)
        for budget, runs in read_outline(path).runs.items():
            assert re.search(rf"^\| `{re.escape(budget)}`.* \| {runs} \|$", page, flags=re.M), (name, budget)
        report = generated.report_of(name)
        if report is not None:
            assert f"generated on {report[1]}: [report.html](../reports/{report[0]}/report.html)" in page
            assert (DOCS / "reports" / report[0] / "report.html").is_file()


def test_the_studies_table_links_every_study_and_shipped_report_from_where_it_stands():
    table = generated.studies_table("studies/index.md")
    assert "[`fashion-mtl`](../studies/fashion-mtl.md)" in table
    assert "[2026-12-03](../reports/fashion-mtl-quick/report.html) (quick)" in table
    assert generated.count_studies() == str(len(generated.studies()))


def test_markers_in_the_pages_are_all_known_and_an_unknown_one_fails_the_build():
    used = {m for document in DOCUMENTS for m in generated.MARKER.findall(document.read_text(encoding="utf-8"))}
    assert used <= set(generated.MARKERS)
    assert {"methods-table", "datasets-table", "studies-table"} <= used
    with pytest.raises(ValueError, match="unknown marker <!-- mtlab:nope -->"):
        generated.fill("<!-- mtlab:nope -->", "x.md")


def test_a_study_header_becomes_prose_and_command_blocks():
    lines = ["x: does it help?", "", "Some words", "over two lines.", "", "  mtlab run x --budget quick   # fast",
             "", "Original study:", "           none   both", "shallow FC   82.5   83.9", "Took 40 minutes."]
    text = generated._header_markdown(lines[1:])
    assert "Some words over two lines.\n" in text
    assert "```bash\nmtlab run x --budget quick   # fast\n```" in text
    assert "Original study:\n" in text
    assert "```text\n           none   both\nshallow FC   82.5   83.9\n```" in text  # a header's aligned table
    assert "\nTook 40 minutes.\n" in text


# ------------------------------------------------------------------------------------ 2. configs in the documents


YAML_BLOCKS = blocks("yaml")


def test_the_documents_have_whole_configs_and_mark_their_fragments():
    whole = [yaml.safe_load(text) for _, info, text in YAML_BLOCKS if "fragment" not in info]
    assert any({"data", "model"} <= set(raw) for raw in whole)  # a whole run config
    assert any("base" in raw for raw in whole)  # a whole study


def _example_problem(directory: Path) -> str:
    from mtlab.cli.main import main

    assert main(["data", "example", str(directory / "my-problem")]) == 0
    return str(directory / "my-problem")


@pytest.mark.slow
@pytest.mark.parametrize(("where", "info", "text"), YAML_BLOCKS, ids=[where for where, _, _ in YAML_BLOCKS])
def test_every_config_block_of_the_documents_validates(where, info, text, tmp_path, monkeypatch, capsys, built_once):
    """A fragment is YAML; a whole study expands into valid run configs; a whole run config trains one epoch (beside
    the files of ``mtlab data example my-problem``, which the own-problem page's configs name)."""
    from mtlab.cli.main import main
    from mtlab.study.spec import expand, load_study_spec

    raw = yaml.safe_load(text)
    assert isinstance(raw, dict), where
    if "fragment" in info:
        return
    monkeypatch.chdir(tmp_path)
    shutil.copytree(built_once("test_docs-my-problem", _example_problem), tmp_path / "my-problem")
    named = re.match(r"#\s*(\S+\.ya?ml)\b", text)
    path = tmp_path / (named[1] if named else "block.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if "base" in raw:
        assert expand(load_study_spec(path)), where
        return
    assert {"data", "model"} <= set(raw), f"{where}: neither a run config nor a study; mark it title=\"fragment\""
    code = main(["train", str(path), "--out", str(tmp_path / "run"), "train.epochs=1", "train.threads=1"])
    assert code == 0, f"{where}: {capsys.readouterr().err}"
    assert (tmp_path / "run" / "metrics.json").is_file()


# ----------------------------------------------------------------------------------- 3. runnable command blocks


RUNNABLE = [(where, text) for where, info, text in blocks("bash") if 'title="runnable"' in info]


def commands(text: str) -> list[list[str]]:
    """The ``mtlab`` command lines of a block, comments dropped; ``mtlab train`` gets the tiny budget and, where it
    names none, an ``--out`` of its own (the default name has a one-second resolution, and these run faster)."""
    found = []
    for line in text.splitlines():
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        assert argv[0] == "mtlab", f"a runnable block runs mtlab commands only: {line}"
        if argv[1] == "train":
            argv += TINY + ([] if "--out" in argv else ["--out", f"runs/line-{len(found)}"])
        found.append(argv[1:])
    return found


def test_some_command_blocks_are_marked_runnable():
    assert len(RUNNABLE) >= 2


@pytest.mark.slow
@pytest.mark.parametrize(("where", "text"), RUNNABLE, ids=[where for where, _ in RUNNABLE])
def test_every_runnable_command_block_runs(where, text, tmp_path, monkeypatch, capsys):
    """In a fresh directory holding the repository's ``examples/``, as a user's shell at the repository root."""
    from mtlab.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    for argv in commands(text):
        code = main(argv)
        assert code == 0, f"{where}: mtlab {shlex.join(argv)}: {capsys.readouterr().err}"


# ---------------------------------------------------------------------------------------------- 4. the public API


def test_every_public_name_imports_from_mtlab_and_from_its_module():
    import mtlab

    for name, module in mtlab.PUBLIC.items():
        obj = getattr(mtlab, name)
        assert getattr(sys.modules[module], name) is obj
    assert set(mtlab.__all__) == {*mtlab.PUBLIC, "PUBLIC", "__version__"}


def test_the_api_reference_documents_exactly_the_public_names():
    import mtlab

    documented = {m for p in (DOCS / "api").glob("*.md") for m in re.findall(r"^::: ([\w.]+)$", p.read_text(), re.M)}
    assert documented == {f"{module}.{name}" for name, module in mtlab.PUBLIC.items()}


def test_public_functions_and_classes_have_reference_docstrings():
    """Arguments, returns and an example: what a reader of the API pages needs (Google style, as mkdocstrings reads
    it)."""
    import mtlab

    missing = []
    for name in mtlab.PUBLIC:
        obj = getattr(mtlab, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue  # a registry instance: documented where it is assigned
        doc = inspect.getdoc(obj) or ""
        wanted = ["Example"]
        if inspect.isfunction(obj) and len(inspect.signature(obj).parameters) > 0:
            wanted.append("Args:")
        missing += [f"{name}: {section}" for section in wanted if section not in doc]
    assert not missing


# -------------------------------------------------------------------------------------------------- 5. the README


def test_the_readme_fits_on_a_few_screens_with_the_two_commands_first():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    first = FENCE.search(text)[3]
    assert "bash scripts/setup.sh && .venv/bin/mtlab run fashion-mtl --budget quick" in first
    assert "bash scripts/setup.sh && .venv/bin/pytest -q" in first


def test_the_readme_lists_every_built_in_study_once_and_links_only_to_files_that_exist():
    from mtlab.study.catalog import builtin_study_paths

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Built-in studies", 1)[1].split("\n## ", 1)[0]
    assert sorted(re.findall(r"^\| `([\w-]+)` \|", section, flags=re.M)) == sorted(builtin_study_paths())
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        assert (ROOT / target).exists(), target
