"""``mtlab studies`` (the built-in studies) and ``mtlab run STUDY`` (train a study's grid, resumably, and report)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.table import Table

from mtlab.cli.console import make_console
from mtlab.cli.executor_options import add_executor_options, executor_arguments
from mtlab.cli.report_cmd import add_figure_format_option
from mtlab.cli.speed import add_speed_options, speed_overrides
from mtlab.cli.track_options import add_track_options
from mtlab.errors import ConfigError

# Studies, configs and training (torch) are imported by the commands that use them: `mtlab --help` must not wait.


def register(subparsers: argparse._SubParsersAction) -> None:
    studies = subparsers.add_parser("studies", help="list the built-in studies")
    studies.set_defaults(func=list_studies)

    run = subparsers.add_parser(
        "run",
        help="run a study (a built-in name or a YAML file); resumes where it stopped",
        description="Train every run of a study that is not done yet, store the results, and write the report. "
        "Running the same command again resumes: finished runs are not repeated. A study directory keeps the "
        "definition it was first run with; a command that differs (overrides, budget, spec) is refused unless it "
        "says --redefine.",
    )
    run.add_argument("study", help="built-in study name (see `mtlab studies`) or study YAML file")
    run.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted config overrides applied to every run (values read as YAML)",
    )
    run.add_argument("--budget", help="budget profile, e.g. quick or full (default: the study's default)")
    run.add_argument("--out", type=Path, help="study directory (default: runs/<study>-<budget>)")
    add_speed_options(run)
    run.add_argument("--retry-failed", action="store_true", help="train the failed runs again")
    run.add_argument(
        "--redefine",
        action="store_true",
        help="let this command replace the definition (study, budget, overrides, spec) of a study directory that "
        "holds another one; the stored runs are kept, and runs both share are not trained again",
    )
    run.add_argument(
        "--group-seeds",
        choices=["auto", "on", "off"],
        default="auto",
        help="train the seeds of a variant together in one process: auto = where that is faster on the device "
        "(dense nets on a CPU, every net on CUDA), on = always, off = one run at a time (default auto)",
    )
    run.add_argument("--group-size", type=int, default=10, help="at most this many seeds per group (default 10)")
    add_executor_options(run)
    add_track_options(run, "OUT")
    run.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    add_figure_format_option(run)
    run.set_defaults(func=run_command)


def list_studies(args: argparse.Namespace) -> int:
    from mtlab.study.catalog import builtin_study_paths
    from mtlab.study.outline import read_outline  # the YAML alone: no run config to validate, no torch

    table = Table(show_header=True, header_style="bold")
    for column in ("study", "runs per budget", "description"):
        table.add_column(column)
    for name, path in builtin_study_paths().items():
        outline = read_outline(path)
        table.add_row(name, ", ".join(f"{b} {n}" for b, n in outline.runs.items()), outline.description)
    make_console().print(table)
    return 0


def run_command(args: argparse.Namespace) -> int:
    from mtlab.cli.progress import study_progress
    from mtlab.config.load import COMMAND_LINE, parse_overrides
    from mtlab.study.catalog import find_study
    from mtlab.study.runner import run_study

    if args.group_size <= 0:
        raise ConfigError(f"--group-size: must be positive, got {args.group_size}")
    if args.track_to and len(set(args.track)) != 1:
        raise ConfigError("--track-to: give exactly one --track with it (each tracker has its own kind of URI)")
    spec, _ = find_study(args.study)
    budget = args.budget or spec.default_budget
    out = args.out or Path("runs") / (f"{spec.name}-{budget}" if budget else spec.name)
    console = make_console(stderr=True)
    with study_progress(console) as progress:
        result = run_study(
            spec,
            out,
            budget=budget,
            overrides=parse_overrides(args.overrides + speed_overrides(args), COMMAND_LINE),
            retry_failed=args.retry_failed,
            redefine=args.redefine,
            group_seeds=args.group_seeds,
            group_size=args.group_size,
            command=["mtlab", *sys.argv[1:]],
            observer=progress,
            track=args.track,
            track_to=args.track_to,
            **executor_arguments(args),
        )
    # Plain print: paths must stay whole (rich would wrap them at the terminal width).
    print(
        f"study {spec.name} ({budget or 'default'}): {result.total} runs, trained {result.trained} now, "
        f"{len(result.failed)} failed -> {out}"
    )
    for run_id, reason in result.failed:
        print(f"  failed {run_id}: {reason}")
    if not args.no_report:
        from mtlab.report import build_report

        paths = build_report(out, figure_format=args.figure_format)
        print(f"report: {paths['html']}  (and {paths['md']})")
    if args.track:
        from mtlab.report.tracking import export_study

        # Runs the live view missed (a tracker that failed), then each variant's Δm, rank and the report.
        for name, destination in export_study(out, args.track, args.track_to).items():
            print(f"{name}: {destination}")
    return 0
