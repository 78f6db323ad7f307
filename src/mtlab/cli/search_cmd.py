"""``mtlab search SPEC``: an architecture / hyper-parameter search with Optuna, resumable, with a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtlab.cli.executor_options import add_executor_options, executor_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="architecture and hyper-parameter search (Optuna), resumable",
        description="Search depth, widths / filters, kernel sizes and learning rate on the validation objective, "
        "with pruning; then retrain the best and worst trial per depth and test them once. SPEC is a built-in "
        "search (mnist-mlp, mnist-cnn, mnist-single-layer) or a YAML file. Extra KEY=VALUE arguments override "
        "the base run config (e.g. train.epochs=3). Run the same command again to resume; give several "
        "processes the same --storage to share one search.",
    )
    parser.add_argument("spec", metavar="SPEC", help="built-in search name or search spec (YAML)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides of the base config")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/search-<name>)")
    parser.add_argument("--storage", help="Optuna storage: a database URL, or a journal file path (default: "
                        "sqlite:///<out>/search.sqlite; <out>/search.journal with several workers)")  # fmt: skip
    parser.add_argument("--budget", help="a budget of the spec (e.g. quick, full)")
    parser.add_argument("--trials", type=int, help="number of finished trials to reach (default: the spec's)")
    parser.add_argument("--seed", type=int, help="seed of the sampler and of every run (default: the spec's)")
    parser.add_argument("--subset", type=int, help="train on a stratified subset of this many training images")
    parser.add_argument("--epochs", type=int, help="epochs per trial (overrides train.epochs)")
    parser.add_argument("--no-retrain", dest="retrain", action="store_false", default=None,
                        help="skip retraining best and worst per depth (for extra workers)")  # fmt: skip
    add_executor_options(parser, what="trials", default="1")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mtlab.config.load import parse_overrides
    from mtlab.errors import ConfigError, MtlabError

    try:
        from mtlab.search import find_search, run_search, with_budget, write_search
        from mtlab.search.run import TrialRecord
    except ImportError as e:  # optuna is an optional dependency
        raise MtlabError(f"mtlab search needs optuna ({e.name} is missing): pip install 'mtlab[analysis]'") from None

    for flag in ("trials", "subset", "epochs"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise ConfigError(f"--{flag}: must be positive, got {value}")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed: must be non-negative, got {args.seed}")
    overrides = parse_overrides(list(args.overrides))
    if args.subset is not None:
        overrides["data.train_subset"] = args.subset
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    spec, _ = find_search(args.spec)
    spec = with_budget(spec, args.budget, overrides)
    spec = spec.model_copy(update={k: v for k, v in (("trials", args.trials), ("seed", args.seed)) if v is not None})
    from mtlab.report.units import format_value, metric_name

    out = args.out or Path("runs") / f"search-{spec.name}"
    key = spec.objective_key()
    metric = metric_name(key)

    def report(t: TrialRecord) -> None:
        shown = format_value(metric, t.value, with_unit=True)  # percent for acc, f1, auroc
        arch = t.architecture.label if t.architecture else "?"
        size = f"{t.parameters:,} params" if t.parameters else ""
        print(f"trial {t.number} {t.state}: {arch} {size}, {key} {shown} ({t.seconds:.1f} s)", flush=True)

    where = executor_arguments(args)
    outcome = run_search(spec, out, storage=args.storage, retrain=args.retrain, on_trial=report, **where)
    paths = write_search(outcome, out)
    for r in outcome.retrained:
        test = format_value(metric, r.test, with_unit=True)
        print(f"depth {r.depth} {r.rank}: trial {r.trial} {r.architecture}, test {metric} {test}")
    print(f"report: {paths['html']}  ({outcome.seconds:.1f} s)")
    return 0
