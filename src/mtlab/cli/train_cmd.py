"""``mtlab train CONFIG``: one run, live progress, a final table, and a run directory on disk."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mtlab.cli.console import make_console
from mtlab.cli.speed import add_speed_options, speed_overrides
from mtlab.cli.track_options import add_track_options
from mtlab.errors import ConfigError, MtlabError

# Configs and training (torch) are imported when a run starts: `mtlab --help` must not wait for them.


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train one run from a config file",
        description="Train one run. Extra KEY=VALUE arguments override config keys, e.g. optim.lr=5e-4 "
        "train.epochs=3 model.sharing=independent (values are read as YAML).",
    )
    parser.add_argument("config", type=Path, help="run config (YAML)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    parser.add_argument("--seed", type=int, help="random seed (overrides the config's seed)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="overrides train.device")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/<config>-s<seed>-<time>)")
    add_speed_options(parser)
    parser.add_argument("--overwrite", action="store_true", help="reuse a non-empty run directory")
    add_track_options(parser, "OUT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtlab.cli.progress import fit_progress, primary_metrics
    from mtlab.config import load_config
    from mtlab.config.load import COMMAND_LINE
    from mtlab.train.fit import TrainingDiverged
    from mtlab.train.run import FanOut, train_run

    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed: must be non-negative, got {args.seed}")
    overrides = list(args.overrides) + speed_overrides(args)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    config = load_config(args.config, overrides, overrides_from=COMMAND_LINE)
    out = args.out or Path("runs") / f"{args.config.stem}-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    console = make_console(stderr=True)
    tracking = None
    overwrite = args.overwrite
    if args.track:
        from mtlab.study.tracking import RunTracking
        from mtlab.train.rundir import RunDirectory

        if args.track_to and len(set(args.track)) != 1:
            raise ConfigError("--track-to: give exactly one --track with it (each tracker has its own kind of URI)")
        # The trackers write into the run directory (as `mtlab run` into its study directory): it is checked and
        # made first, as training would, since a tracker's files are in it by the time training starts; a tracker
        # that cannot start leaves nothing behind.
        made = next((p for p in [*reversed(out.parents), out] if not p.exists()), None)
        RunDirectory(out, overwrite=overwrite)
        overwrite = True
        try:
            tracking = RunTracking(args.track, config, out, args.track_to)
        except MtlabError:
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)
            raise
    try:
        with fit_progress(primary_metrics(config), console) as progress:
            observer = FanOut(progress, tracking)
            outcome = train_run(config, out, argv=["mtlab", *sys.argv[1:]], observer=observer, overwrite=overwrite)
    except TrainingDiverged as e:
        if tracking is not None:
            tracking.finish({}, "failed", str(e))
        raise MtlabError(f"{e} (run recorded as failed in {out})") from None
    if tracking is not None:
        tracking.finish({**outcome.result.test, **outcome.result.val})
    console = make_console()
    _print_summary(console, outcome, primary_metrics(config))
    console.print(training_setup(config), markup=False, highlight=False)
    for note in outcome.extras.get("notes", []):  # what the data decided that the config did not say
        console.print(f"note: {note}", markup=False, highlight=False)
    for name, destination in (tracking.destinations if tracking is not None else {}).items():
        console.print(f"{name}: {destination}", markup=False, highlight=False)
    return 0


def training_setup(config) -> str:
    """``weighting: cagrad (c=0.4), weights item 0.7, group 0.3; diagnostics: off``: how the task losses became one
    update (the method, its options not at their defaults, the loss weights) and whether gradient diagnostics ran."""
    loss = config.loss
    options = [
        f"{name}={getattr(loss, name)}"
        for name, info in type(loss).model_fields.items()
        if name not in ("method", "weights") and getattr(loss, name) != info.get_default(call_default_factory=True)
    ]
    method = loss.method + (f" ({', '.join(options)})" if options else "")
    if loss.weights:
        method += ", weights " + ", ".join(f"{task} {weight:g}" for task, weight in loss.weights.items())
    every = config.train.diagnostics
    diagnostics = "off" if every is None else f"on, every {every.every} steps" + (", per layer" if every.layers else "")
    return f"weighting: {method}; diagnostics: {diagnostics}"


def _print_summary(console: Console, outcome, tasks: dict[str, str]) -> None:
    """Per task its primary metric on validation (the selected epoch) and test, and its test loss; fractions in
    percent. One metric for every task names the columns (``val acc``); otherwise a ``metric`` column does."""
    from mtlab.report.units import format_value

    result = outcome.result
    counts = outcome.model.parameter_counts()
    split = ", ".join([f"shared {counts['shared']:,}"] + [f"{t} {counts[f'task:{t}']:,}" for t in tasks])
    # A line of its own, not the table's title: a title is wrapped to the table's width.
    console.print(f"{outcome.parameters:,} parameters ({split}), best epoch {result.best_epoch}/{len(result.history)}")
    table = Table()
    shared = len(set(tasks.values())) == 1
    table.add_column("task")
    if not shared:
        table.add_column("metric")
    suffix = f" {next(iter(tasks.values()))}" if shared else ""
    table.add_column(f"val{suffix}", justify="right")
    table.add_column(f"test{suffix}", justify="right")
    table.add_column("test loss", justify="right")
    for t, metric in tasks.items():
        val = result.val.get(f"val.{t}.{metric}")
        cells = [t] if shared else [t, metric]
        cells += [
            format_value(metric, val, with_unit=True) if val is not None else "-",
            format_value(metric, result.test.get(f"test.{t}.{metric}"), with_unit=True),
            f"{result.test[f'test.{t}.loss']:.4f}",
        ]
        table.add_row(*cells)
    console.print(table)
    console.print(f"run directory: {outcome.run_dir.path}  ({result.seconds:.1f} s)")
