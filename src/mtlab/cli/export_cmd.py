"""``mtlab export STUDY_DIR``: a study's runs and per-epoch history as CSV or Parquet tables, the report's main tables
as LaTeX (the file formats are the rows of :data:`~mtlab.report.export_formats.EXPORT_FORMATS`), or the whole study
sent to an experiment tracker (MLflow, TensorBoard, W&B: :data:`~mtlab.trackers.TRACKERS`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtlab.cli.report_cmd import print_unfinished
from mtlab.errors import ConfigError, MtlabError


def register(subparsers: argparse._SubParsersAction) -> None:
    from mtlab.report.export_formats import EXPORT_FORMATS  # a table of names: imports nothing heavy
    from mtlab.trackers import TRACKERS  # the tracker modules import their clients only when used

    parser = subparsers.add_parser(
        "export",
        help="write a study's runs and history as CSV or Parquet, its main tables as LaTeX, or the study into "
        "MLflow, TensorBoard or W&B",
        description="csv / parquet: runs.<format> (one row per run: labels, status, final test and validation "
        "metrics) and epochs.<format> (one row per run and epoch, one column per metric). latex: the report's main "
        "tables (summary, comparisons, ranking) as booktabs LaTeX, one .tex per table, and tables.tex inputting "
        "them. mlflow / tensorboard / wandb: the study (finished or partial) sent to an experiment tracker, as "
        "`mtlab run --track` does live; exporting to a tracker twice creates nothing new: it sends only what the "
        "tracker lacks.",
    )
    parser.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help="a study directory (holds results.sqlite)")
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=[*EXPORT_FORMATS, *TRACKERS.names()],
        default="csv",
        help="; ".join(f"{name}: {f.writes}" for name, f in EXPORT_FORMATS.items())
        + "; or a tracker (pip install 'mtlab[NAME]') (default: csv)",
    )
    parser.add_argument("--out", type=Path, help="files: output directory (default: STUDY_DIR/export)")
    parser.add_argument(
        "--to",
        metavar="URI",
        help="trackers: where to write (MLflow tracking URI, default sqlite:///STUDY_DIR/mlflow.db or "
        "MLFLOW_TRACKING_URI; TensorBoard log directory, default STUDY_DIR/tensorboard; W&B directory, default "
        "STUDY_DIR)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtlab.report.export_formats import EXPORT_FORMATS
    from mtlab.trackers import TRACKERS

    if args.fmt in EXPORT_FORMATS:
        if args.to is not None:
            raise ConfigError(f"--to: only with a tracker format ({', '.join(TRACKERS.names())}); use --out")
        from mtlab.report import export_tables  # pandas: only when an export is asked for

        paths = export_tables(args.study_dir, args.fmt, args.out)
        for path in paths:
            print(path)
        if args.fmt == "latex" and not any(p.name == "ranking.tex" for p in paths):
            print("note: no ranking.tex: a ranking needs a control and three or more variants with finished runs "
                  "(tables.tex says so)", file=sys.stderr)  # fmt: skip
    else:
        if args.out is not None:
            raise ConfigError(f"--out: only with a file format ({', '.join(EXPORT_FORMATS)}); use --to")
        from mtlab.report.tracking import send_study

        sent = send_study(args.study_dir, [args.fmt], args.to)
        if args.fmt not in sent:  # the tracker failed: its warning says how
            raise MtlabError(f"--format {args.fmt}: the export did not finish; run the same command again")
        print(f"{args.fmt}: {sent[args.fmt]}")
    print_unfinished(args.study_dir)
    return 0
