"""``mtlab tasks``: every registered task type - its outputs, its metrics with their directions, its primary one -
and every registered dataset with its tasks' types (mtlab's own and installed plug-ins')."""

from __future__ import annotations

import argparse

from rich.table import Table

from mtlab.cli.console import make_console

ARROW = {"max": "↑", "min": "↓"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tasks",
        help="list the task types (metrics, directions) and the datasets' tasks",
        description="Task types usable as data.tasks.<name>.type (table, arrays) and offered by the datasets; ↑: "
        "higher is better, ↓: lower is better. Early stopping and search take any val.<task>.<metric>.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtlab.config.base import DATASETS  # loads every dataset module on first use (mtlab's, then plug-ins')
    from mtlab.tasks import TASK_TYPES

    types = Table(title="task types")
    for column in ("type", "metrics (primary first)", "confusion matrix"):
        types.add_column(column, overflow="fold")
    for name, kind in TASK_TYPES.items():
        metrics = [kind.primary, *(m for m in kind.metrics if m != kind.primary), "loss"]
        listed = ", ".join(f"{m} {ARROW[kind.direction(m)]}" for m in metrics)
        types.add_row(name, listed, "yes" if kind.has_confusion else "no")
    datasets = Table(title="datasets")
    for column in ("dataset", "tasks (type)"):
        datasets.add_column(column, overflow="fold")
    for name, options in DATASETS.items():
        datasets.add_row(name, _tasks(options, name))
    console = make_console()
    console.print(types)
    console.print(datasets)
    return 0


def _tasks(options, name: str) -> str:
    """A dataset's tasks and their types, as its options answer with no other key set."""
    try:
        instance = options.model_validate({"dataset": name})
    except ValueError:  # a required key: the tasks come from the config (table, arrays)
        return "declared in data.tasks"
    return ", ".join(f"{t} ({kind})" for t, kind in instance.task_types().items())
