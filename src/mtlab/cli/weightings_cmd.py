"""``mtlab weightings``: every registered weighting method - its kind, its paper, its options with defaults."""

from __future__ import annotations

import argparse

from rich.table import Table

from mtlab.cli.console import make_console

_COMMON = ("method", "weights")  # every method has these; listed once under the table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weightings",
        help="list the loss weighting and gradient balancing methods and their options",
        description="Every method usable as loss.method, with its kind (loss-based: one backward pass of a combined "
        "objective; gradient-based: per-task gradients combined into the update), its source and its options "
        "(set as loss.OPTION=VALUE). Every method also takes loss.weights, constant per-task loss multipliers; the "
        "weights column says where they act otherwise, or are refused (a weight of 0 always leaves a task out).",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead")
    parser.set_defaults(func=run)


def weights_effect(cls) -> str:
    """How ``loss.weights`` act on the method ``cls``: as loss multipliers, as its ``weights_note`` says, or refused
    (its options' ``weights_refused``: the method is invariant to them by design)."""
    if cls.Options.weights_refused:
        return f"refused: {cls.name} {cls.Options.weights_refused}"
    return cls.weights_note or "loss multipliers"


def describe() -> list[dict[str, str]]:
    """One row per method: name, kind, min tasks, paper, options as ``name=default``, what loss.weights do."""
    from mtlab.weighting import method_class, registered_methods

    rows = []
    for name in registered_methods():
        cls = method_class(name)
        options = [
            f"{field}={info.default!r}" if not callable(info.default_factory) else f"{field}={info.default_factory()!r}"
            for field, info in cls.Options.model_fields.items()
            if field not in _COMMON
        ]
        kind = "loss" if cls.step == "scalar" else "gradient"
        rows.append({"method": name, "kind": kind, "tasks": f">= {cls.min_tasks}", "paper": cls.paper,
                     "options": ", ".join(options) or "-", "weights": weights_effect(cls)})
    return rows


def run(args: argparse.Namespace) -> int:
    rows = describe()
    if args.markdown:
        print("| method | kind | tasks | options (defaults) | loss.weights | paper |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            cells = [f"`{r['method']}`", r["kind"], r["tasks"], r["options"], r["weights"], r["paper"]]
            print("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        return 0
    table = Table(title="weighting methods (loss.method)")
    for column in ("method", "kind", "tasks", "options", "loss.weights", "paper"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["method"], r["kind"], r["tasks"], r["options"], r["weights"], r["paper"])
    make_console().print(table)
    print("every method: loss.weights (per-task loss multipliers, default 1; 0 leaves a task out), acting otherwise or "
          "refused where the loss.weights column says; e.g. mtlab train CONFIG loss.method=cagrad loss.c=0.4")
    return 0
