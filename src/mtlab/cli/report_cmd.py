"""``mtlab report STUDY_DIR``: rebuild a study's report from its results store, without training anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="rebuild a study's report (Markdown, HTML, figures) from its results",
        description="Read STUDY_DIR/results.sqlite and write report.md, a self-contained report.html and "
        "figures/*.png (or .svg / .pdf) into STUDY_DIR. Works on partial studies: unfinished and failed runs are "
        "reported as such.",
    )
    parser.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help="a study directory (holds results.sqlite)")
    add_figure_format_option(parser)
    parser.set_defaults(func=run)


def add_figure_format_option(parser: argparse.ArgumentParser) -> None:
    """``--figure-format``, shared by ``mtlab report`` and ``mtlab run``."""
    from mtlab.report import FIGURE_FORMATS  # the package's __init__ only: no pandas, no matplotlib

    parser.add_argument(
        "--figure-format",
        choices=FIGURE_FORMATS,
        default=None,
        help="figures as png, svg (vector, embedded in report.html) or pdf (vector, for a paper; written beside a png, "
        "which report.html embeds); the study directory remembers it (default: its last format, else png)",
    )


def run(args: argparse.Namespace) -> int:
    from mtlab.report import build_report  # pandas and matplotlib: only when a report is asked for

    paths = build_report(args.study_dir, figure_format=args.figure_format)
    print(f"markdown: {paths['md']}")
    print(f"html:     {paths['html']}")
    print(f"figures:  {paths['figures']}")
    print_unfinished(args.study_dir)
    return 0


def print_unfinished(study_dir: Path) -> None:
    """Say how many runs of the study were not finished when it was read (a driver may still be at work)."""
    from mtlab.report.tables import store_path
    from mtlab.study.store import UNFINISHED, ResultStore

    with ResultStore(store_path(study_dir)) as store:
        statuses = list(store.statuses().values())
    unfinished = sum(s in UNFINISHED for s in statuses)
    if unfinished:
        print(
            f"note: {unfinished} of {len(statuses)} runs unfinished (still running, or stopped before they ended); "
            "these tables cover the finished ones - run this again later, or resume the study with `mtlab run`",
            file=sys.stderr,
        )
