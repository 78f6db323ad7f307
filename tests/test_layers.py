"""Layers you can see: every import inside mtlab runs downward through the layers of the design, and no module imports
itself back, not even from inside a function.

The graph is read from the source with :mod:`ast` (no module is imported): every ``import`` / ``from ... import``
anywhere in a module - at module level and inside functions or methods, absolute and relative - that names an mtlab
module. ``from package import name`` is an edge to the submodule ``package.name`` when there is one, else to the
package's ``__init__``. Imports under ``if TYPE_CHECKING:`` never run; they are forward references for type
annotations and are left out.

Layers, lowest first (a module may import its own layer and the ones below; see ``shared/DESIGN.md``)::

    core < pages, tasks, weighting (and config.base) < config < data < models < train < execute, trackers
         < study < report, analysis, search < cli

Two checks: no import runs upward (a failure names the importing module, its line and the module it imports), and
no cycle - neither between modules (a strongly connected component of more than one module) nor between the
packages of one layer (``report`` importing ``analysis`` while ``analysis`` imports ``report``).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "mtlab"

LAYERS = [
    "core",
    "pages, tasks, weighting",
    "config",
    "data",
    "models",
    "train",
    "execute, trackers",
    "study",
    "report, analysis, search",
    "cli",
]

# Every mtlab module, by its longest prefix here, belongs to one layer. A new top-level module or package must be
# placed here (an unplaced one fails test_every_module_has_a_layer).
PLACES = {
    "mtlab": "cli",  # the package's __init__: the public façade (mtlab.Weighting, loaded on first use)
    "mtlab.version": "core",
    "mtlab.errors": "core",
    "mtlab.atomic": "core",
    "mtlab.seeding": "core",
    "mtlab.environment": "core",
    "mtlab.registry": "core",
    "mtlab.builtin_files": "core",
    "mtlab.pages": "pages, tasks, weighting",  # the page toolkit: blocks, Markdown / HTML writers, figure files
    "mtlab.tasks": "pages, tasks, weighting",
    "mtlab.weighting": "pages, tasks, weighting",
    # The base every plug-in's options build on (Strict, the plug-in registries): it imports core and task types
    # only, so weighting methods (and task types) may declare their options on it.
    "mtlab.config.base": "pages, tasks, weighting",
    "mtlab.config": "config",
    "mtlab.data": "data",
    "mtlab.models": "models",
    "mtlab.train": "train",
    "mtlab.execute": "execute, trackers",
    "mtlab.trackers": "execute, trackers",  # the clients; study/tracking.py feeds them a study, report/ an export
    "mtlab.lightning": "execute, trackers",  # the Lightning integration: mtlab.Weighting (train) in a LightningModule
    "mtlab.study": "study",
    "mtlab.report": "report, analysis, search",
    "mtlab.analysis": "report, analysis, search",
    "mtlab.search": "report, analysis, search",
    "mtlab.cli": "cli",
    "mtlab.__main__": "cli",
}

# Edges known to break the rules, each with the work that removes it. An entry whose import is gone fails
# test_allowed_edges_still_exist, so the list cannot go stale; the goal is an empty list.
H_MODELS_H_DATA = "removed by h-models / h-data"  # config assembled in two steps; datasets and kinds one module each
ALLOWED = {
    ("mtlab.config.plugins", "mtlab.data.builtin"): H_MODELS_H_DATA,  # every dataset module, one import (h-data)
    ("mtlab.config.plugins", "mtlab.models.custom"): H_MODELS_H_DATA,
    ("mtlab.config.plugins", "mtlab.models.deeplab"): H_MODELS_H_DATA,
    ("mtlab.config.plugins", "mtlab.models.imagenet_resnet"): H_MODELS_H_DATA,
    ("mtlab.config.plugins", "mtlab.models.multi_lenet"): H_MODELS_H_DATA,
    ("mtlab.config.plugins", "mtlab.models.segnet"): H_MODELS_H_DATA,
    ("mtlab.config.plugins", "mtlab.models.timm_trunk"): H_MODELS_H_DATA,
    ("mtlab.config.schema", "mtlab.config.plugins"): H_MODELS_H_DATA,
    # The model registry loads the built-in kinds on first use, and they import it to register: one registry
    # style with the built-ins loaded by the assembly step.
    ("mtlab.models.registry", "mtlab.models.builtin"): H_MODELS_H_DATA,
    # The tracker package imports its clients to register them, and they import its registry: built-ins loaded
    # by module name on first use (h-models' one registry style).
    ("mtlab.trackers", "mtlab.trackers.mlflow"): H_MODELS_H_DATA,
    ("mtlab.trackers", "mtlab.trackers.tensorboard"): H_MODELS_H_DATA,
    ("mtlab.trackers", "mtlab.trackers.wandb"): H_MODELS_H_DATA,
    # A custom model's stacking probe builds train's StackedReplicas: the probe belongs in train/ (the trainer asks
    # the net whether to try, then tries).
    ("mtlab.models.custom", "mtlab.train.replicas"): "left: custom.py is being reshaped by h-models this round",
}


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py"))}


def _type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every import statement in ``tree``, at any depth, except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """``{importer: {imported: first line}}`` over mtlab's own modules (an importer never lists itself)."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
            for target in targets:
                while target and target not in modules:  # `import mtlab.x.y` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def layer_of(module: str) -> str | None:
    """The layer of ``module``'s longest placed prefix; the package's ``__init__`` is placed for itself only."""
    if module in PLACES:
        return PLACES[module]
    name = module.rpartition(".")[0]
    while name and name != "mtlab":
        if name in PLACES:
            return PLACES[name]
        name = name.rpartition(".")[0]
    return None


def upward_edges(graph: dict[str, dict[str, int]]) -> list[str]:
    found = []
    for importer, edges in sorted(graph.items()):
        for imported, line in sorted(edges.items()):
            low, high = layer_of(importer), layer_of(imported)
            if None in (low, high) or (importer, imported) in ALLOWED:
                continue
            if LAYERS.index(high) > LAYERS.index(low):
                found.append(f"{importer}:{line} imports {imported} ({low} -> {high})")
    return found


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components of more than one node, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def module_cycles(graph: dict[str, dict[str, int]]) -> list[str]:
    edges = {a: {b for b in targets if (a, b) not in ALLOWED} for a, targets in graph.items()}
    found = []
    for component in strongly_connected(edges):
        inside = set(component)
        found.append(
            "cycle: "
            + ", ".join(f"{a}:{graph[a][b]} -> {b}" for a in component for b in sorted(edges[a]) if b in inside)
        )
    return found


def package_of(module: str) -> str:
    """The entry of PLACES that places ``module``: its package, or a module placed on its own."""
    while module not in PLACES:
        module = module.rpartition(".")[0]
    return module


def package_cycles(graph: dict[str, dict[str, int]]) -> list[str]:
    """Cycles between the top-level packages (``mtlab.report``, ``mtlab.analysis``, ...), each edge named by one of
    the imports that make it."""
    examples: dict[tuple[str, str], str] = {}
    for a, targets in sorted(graph.items()):
        for b, line in sorted(targets.items()):
            if package_of(a) != package_of(b) and (a, b) not in ALLOWED:
                examples.setdefault((package_of(a), package_of(b)), f"{a}:{line} -> {b}")
    edges: dict[str, set[str]] = defaultdict(set)
    for a, b in examples:
        edges[a].add(b)
    found = []
    for component in strongly_connected(edges):
        inside = set(component)
        found.append("package cycle: " + "; ".join(examples[a, b] for a in component for b in edges[a] if b in inside))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return import_graph(all_modules())


def test_every_module_has_a_layer():
    unplaced = [m for m in all_modules() if layer_of(m) is None]
    assert not unplaced, f"place these modules in a layer (PLACES in {Path(__file__).name}): {unplaced}"


def test_no_import_runs_upward(graph):
    found = upward_edges(graph)
    assert not found, "imports against the layers:\n" + "\n".join(found)


def test_no_module_imports_itself_back(graph):
    found = module_cycles(graph)
    assert not found, "\n".join(found)


def test_no_two_packages_import_each_other(graph):
    found = package_cycles(graph)
    assert not found, "\n".join(found)


def test_allowed_edges_still_exist(graph):
    gone = sorted(f"{a} -> {b}" for a, b in ALLOWED if b not in graph.get(a, {}))
    assert not gone, f"remove from ALLOWED (the import is gone): {gone}"


def test_the_page_toolkit_stands_on_core_alone():
    """mtlab.pages (blocks, cells, tables, Markdown / HTML writers, figure files) imports no study, store, config,
    pandas, torch or matplotlib: any report, analysis or search page can use it. Checked in a fresh interpreter."""
    script = (
        "import sys, mtlab.pages.blocks, mtlab.pages.figures, mtlab.pages.render\n"
        "heavy = ('pandas', 'torch', 'matplotlib', 'pydantic')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('mtlab.')\n"
        "             and not m.startswith(('mtlab.pages', 'mtlab.atomic', 'mtlab.errors'))))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_only_the_command_line_parses_arguments():
    """argparse lives in ``mtlab.cli`` alone: the library takes typed values or parsed options, never a command
    line (analyses, searches and reports keep their work; their options and printing are the CLI's)."""
    found = [
        f"{name}:{node.lineno}"
        for name, path in all_modules().items()
        if layer_of(name) != "cli"
        for node in _imports(ast.parse(path.read_text(encoding="utf-8")))
        if any(alias.name == "argparse" for alias in node.names) or getattr(node, "module", None) == "argparse"
    ]
    assert not found, f"argparse outside mtlab.cli: {found}"


# --------------------------------------------------------------------------------------------- the checker itself


def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {module_name(p, root): p for p in sorted((root / "mtlab").rglob("*.py"))}


def test_checker_finds_imports_inside_functions_and_relative_ones(tmp_path):
    modules = _write(
        tmp_path,
        {
            "mtlab/__init__.py": "",
            "mtlab/errors.py": "def f():\n    from mtlab.train import fit\n",
            "mtlab/train/__init__.py": "",
            "mtlab/train/fit.py": "from ..errors import f\nfrom . import run\n",
            "mtlab/train/run.py": "import typing\nif typing.TYPE_CHECKING:\n    from mtlab.cli import main\n",
            "mtlab/cli/__init__.py": "",
            "mtlab/cli/main.py": "",
        },
    )
    graph = import_graph(modules)
    assert graph["mtlab.errors"] == {"mtlab.train.fit": 2}
    assert graph["mtlab.train.fit"] == {"mtlab.errors": 1, "mtlab.train.run": 2}
    assert graph["mtlab.train.run"] == {}  # a type-checking import never runs
    assert upward_edges(graph) == ["mtlab.errors:2 imports mtlab.train.fit (core -> train)"]
    assert module_cycles(graph) == ["cycle: mtlab.errors:2 -> mtlab.train.fit, mtlab.train.fit:1 -> mtlab.errors"]


def test_checker_finds_cycles_between_packages_of_one_layer(tmp_path):
    modules = _write(
        tmp_path,
        {
            "mtlab/__init__.py": "",
            "mtlab/report/__init__.py": "",
            "mtlab/report/tables.py": "from mtlab.analysis.stats import x\n",
            "mtlab/analysis/__init__.py": "",
            "mtlab/analysis/stats.py": "x = 1\n",
            "mtlab/analysis/pca.py": "def page():\n    from mtlab.report import tables\n",
        },
    )
    graph = import_graph(modules)
    assert upward_edges(graph) == []
    assert module_cycles(graph) == []
    assert package_cycles(graph) == [
        "package cycle: mtlab.analysis.pca:2 -> mtlab.report.tables; mtlab.report.tables:1 -> mtlab.analysis.stats"
    ]
