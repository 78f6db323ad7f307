"""``mtlab export STUDY_DIR``: a study's runs and per-epoch history as CSV or Parquet tables."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtlab.cli.report_cmd import print_unfinished


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a study's runs and per-epoch history as CSV or Parquet",
        description="Write runs.<format> (one row per run: labels, status, final test and validation metrics) "
        "and epochs.<format> (one row per run and epoch, one column per metric).",
    )
    parser.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help="a study directory (holds results.sqlite)")
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=["csv", "parquet"],
        default="csv",
        help="table format (parquet needs pyarrow; default: csv)",
    )
    parser.add_argument("--out", type=Path, help="output directory (default: STUDY_DIR/export)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtlab.report import export_tables  # pandas: only when an export is asked for

    for path in export_tables(args.study_dir, args.fmt, args.out):
        print(path)
    print_unfinished(args.study_dir)
    return 0
