"""``mtlab export STUDY_DIR``: a study's runs and per-epoch history as CSV or Parquet tables, or the report's main
tables as LaTeX; the formats are the rows of :data:`~mtlab.report.export_formats.EXPORT_FORMATS`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtlab.cli.report_cmd import print_unfinished


def register(subparsers: argparse._SubParsersAction) -> None:
    from mtlab.report.export_formats import EXPORT_FORMATS  # a table of names: imports nothing heavy

    parser = subparsers.add_parser(
        "export",
        help="write a study's runs and history as CSV or Parquet, or its main tables as LaTeX",
        description="csv / parquet: runs.<format> (one row per run: labels, status, final test and validation "
        "metrics) and epochs.<format> (one row per run and epoch, one column per metric). latex: the report's main "
        "tables (summary, comparisons, ranking) as booktabs LaTeX, one .tex per table, and tables.tex inputting "
        "them.",
    )
    parser.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help="a study directory (holds results.sqlite)")
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=list(EXPORT_FORMATS),
        default="csv",
        help="; ".join(f"{name}: {f.writes}" for name, f in EXPORT_FORMATS.items()) + " (default: csv)",
    )
    parser.add_argument("--out", type=Path, help="output directory (default: STUDY_DIR/export)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtlab.report import export_tables  # pandas: only when an export is asked for

    for path in export_tables(args.study_dir, args.fmt, args.out):
        print(path)
    print_unfinished(args.study_dir)
    return 0
