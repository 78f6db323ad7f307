"""``mtlab export STUDY_DIR``: a study's runs and per-epoch history as CSV or Parquet tables, or into an experiment
tracker (MLflow, TensorBoard, W&B)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtlab.cli.report_cmd import print_unfinished
from mtlab.errors import ConfigError, MtlabError
from mtlab.trackers import TRACKERS

TABLE_FORMATS = ("csv", "parquet")  # mtlab.report.export; every other format is a tracker (mtlab.trackers)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a study's runs and per-epoch history as CSV or Parquet, or into MLflow, TensorBoard or W&B",
        description="Write runs.<format> (one row per run: labels, status, final test and validation metrics) "
        "and epochs.<format> (one row per run and epoch, one column per metric); or send the study (finished or "
        "partial) to an experiment tracker, as `mtlab run --track` does live. Exporting to a tracker twice "
        "creates nothing new: it sends only what the tracker lacks.",
    )
    parser.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help="a study directory (holds results.sqlite)")
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=[*TABLE_FORMATS, *TRACKERS.names()],
        default="csv",
        help="table format (parquet needs pyarrow; default: csv), or a tracker (pip install 'mtlab[NAME]')",
    )
    parser.add_argument("--out", type=Path, help="tables: output directory (default: STUDY_DIR/export)")
    parser.add_argument(
        "--to",
        metavar="URI",
        help="trackers: where to write (MLflow tracking URI, default sqlite:///STUDY_DIR/mlflow.db or "
        "MLFLOW_TRACKING_URI; TensorBoard log directory, default STUDY_DIR/tensorboard; W&B directory, default "
        "STUDY_DIR)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.fmt in TABLE_FORMATS:
        if args.to is not None:
            raise ConfigError(f"--to: only with a tracker format ({', '.join(TRACKERS.names())}); use --out")
        from mtlab.report import export_tables  # pandas: only when an export is asked for

        for path in export_tables(args.study_dir, args.fmt, args.out):
            print(path)
    else:
        if args.out is not None:
            raise ConfigError(f"--out: only with a table format ({', '.join(TABLE_FORMATS)}); use --to")
        from mtlab.trackers.tracking import export_study

        destinations = export_study(args.study_dir, [args.fmt], args.to)
        if args.fmt not in destinations:  # the tracker failed: its warning says how
            raise MtlabError(f"--format {args.fmt}: the export did not finish; run the same command again")
        print(f"{args.fmt}: {destinations[args.fmt]}")
    print_unfinished(args.study_dir)
    return 0
