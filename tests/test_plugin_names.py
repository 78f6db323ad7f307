"""Plug-ins are asked, never named: no module of mtlab branches on the name of a dataset, task type, trunk, model
kind, weighting method, executor or tracker outside the plug-in's own module (``== "mnist"``, ``kind in (...)``).

The comparisons are found in every module's syntax tree (a string constant, or a tuple / list / set of them, on
either side of ``==``, ``!=``, ``in``, ``not in``), and the names are every registry's, so a new plug-in is covered
the day it is registered.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mtlab.config.base import DATASETS, MODEL_KINDS, TRUNKS
from mtlab.execute import (
    EXECUTORS,
    create_executor,
    executor_is_parallel,
    executor_needs_shared_storage,
    executor_takes_address,
)
from mtlab.tasks import TASK_TYPES
from mtlab.trackers import TRACKERS
from mtlab.weighting import method_class, registered_methods

SRC = Path(__file__).resolve().parents[1] / "src" / "mtlab"

ALLOWED = {
    # Not plug-in names: the same words in another sense.
    ("data/mtan_layout.py", "depth"),  # a file kind of the MTAN layout (image, label, depth), not the task type
    ("search/space.py", "mlp"),  # a search space's own type (spaces of MLP or CNN trunks), not a trunk's
}


def plugin_names() -> dict[str, str]:
    """Every registered name -> the module that owns the plug-in."""
    owners: dict[str, str] = {}
    for registry in (DATASETS, TASK_TYPES, TRUNKS, MODEL_KINDS, EXECUTORS, TRACKERS):
        for name, item in registry.items():
            owners[name] = getattr(item, "__module__", None) or type(item).__module__
    for name in registered_methods():
        owners[name] = method_class(name).__module__
    return owners


def constants(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def branches_on_names(owners: dict[str, str]) -> set[tuple[str, str]]:
    found = set()
    for path in SRC.rglob("*.py"):
        module = "mtlab." + ".".join(path.relative_to(SRC).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
                continue
            for side in (node.left, *node.comparators):
                for value in constants(side):
                    if value in owners and owners[value] != module:
                        found.add((path.relative_to(SRC).as_posix(), value))
    return found


def test_no_module_branches_on_a_plug_ins_name_outside_the_plug_in():
    found = branches_on_names(plugin_names())
    assert found - ALLOWED == set(), "ask the plug-in (an answer on its options class) instead of naming it"


def test_the_allow_list_holds_only_what_is_still_there():
    assert ALLOWED - branches_on_names(plugin_names()) == set()


def test_the_check_finds_a_branch_on_a_kind_name(tmp_path):
    tree = ast.parse('if config.model.kind in ("mtan", "ple"):\n    pass\n')
    compare = next(n for n in ast.walk(tree) if isinstance(n, ast.Compare))
    assert constants(compare.comparators[0]) == ["mtan", "ple"]


@pytest.mark.parametrize("kind", EXECUTORS.names())
def test_every_executor_runs_from_its_example_and_answers_for_itself(kind):
    factory = EXECUTORS.get(kind)
    assert isinstance(executor_takes_address(kind), bool)
    assert not executor_is_parallel(kind, 1) or executor_needs_shared_storage(kind, 1)  # parallel: not in process
    if factory.example is None:
        pytest.skip(f"{kind} runs only where its cluster library is")
    executor = create_executor(kind, **factory.example)
    try:
        assert executor.slots >= 1
        assert executor.describe()["executor"] == kind
    finally:
        executor.close()


@pytest.mark.parametrize("name", TRACKERS.names())
def test_every_tracker_tracks_a_run_at_its_example_destination(name, tmp_path):
    from mtlab.errors import MtlabError
    from mtlab.trackers.base import TrackedRun

    kind = TRACKERS.get(name)
    tracker = kind("demo", kind.example(tmp_path))
    try:
        tracker.check()
        experiment = tracker.open_experiment(None)
        run = tracker.open_run(TrackedRun("r1", "r1", "shared", seed=0, params={"seed": "0"}), None, None)
    except MtlabError as e:  # its client library is not installed here
        pytest.skip(str(e))
    assert isinstance(experiment, str)
    assert isinstance(run, str)
    tracker.log_epochs(run, [{"epoch": 1, "train.loss": 0.5}])
    tracker.log_final(run, {"test.item.acc": 0.9}, {"status": "done"})
    tracker.end_run(run, "done", None)
    tracker.close()
