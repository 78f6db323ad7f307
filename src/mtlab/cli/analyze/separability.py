"""``mtlab analyze separability``: its options and what it prints; the analysis is in :mod:`mtlab.analysis`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtlab.analysis.separability import DATASETS, PairResult, analyze_separability, write_separability


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``separability`` to the ``mtlab analyze`` subcommands."""
    parser = subparsers.add_parser(
        "separability",
        help="perceptron and exact LP separability test for every pair of classes",
        description="For every pair of classes (45 on MNIST): a perceptron (converged? epochs, time, train/test "
        "accuracy, weights as an image) and an exact linear-programming separability test. Writes PNG, CSV, JSON "
        "and a self-contained report.html. On the full MNIST training set the 45 LPs take about 4 minutes (HiGHS"
        " runs on one CPU core); --subset makes a quick run.",
    )
    parser.add_argument("--dataset", choices=DATASETS, default="mnist")
    parser.add_argument("--lr", type=float, default=0.01, help="perceptron learning rate (default 0.01)")
    parser.add_argument("--max-epochs", type=int, default=100, help="perceptron budget in passes (default 100)")
    parser.add_argument("--subset", type=int, help="use a stratified subset of this many training images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset and of the perceptron's order")
    parser.add_argument("--no-lp", dest="exact", action="store_false", help="skip the exact LP test")
    parser.add_argument("--lp-time-limit", type=float, help="seconds allowed per pair's LP test (default: none)")
    parser.add_argument("--data-dir", type=Path, help="directory holding the dataset files")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/analyze-separability-<dataset>)")
    parser.set_defaults(func=run_cli)
    return parser


def run_cli(args: argparse.Namespace) -> int:
    from mtlab.errors import ConfigError

    if args.lr <= 0 or args.max_epochs <= 0 or (args.subset is not None and args.subset <= 1):
        raise ConfigError("--lr and --max-epochs must be positive and --subset at least 2")

    def report(p: PairResult) -> None:
        lp = "" if p.lp is None else f", LP: {p.lp.message} ({p.lp.seconds:.1f} s)"
        state = f"converged in {p.perceptron.epochs} epochs" if p.perceptron.converged else "did not converge"
        print(f"{p.a} vs {p.b}: perceptron {state}, test acc {100 * p.test_acc:.2f}%{lp}", flush=True)

    analysis = analyze_separability(
        args.dataset,
        lr=args.lr,
        max_epochs=args.max_epochs,
        subset=args.subset,
        seed=args.seed,
        exact=args.exact,
        lp_time_limit=args.lp_time_limit,
        data_dir=args.data_dir,
        on_pair=report,
    )
    out = args.out or Path("runs") / f"analyze-separability-{args.dataset}"
    paths = write_separability(analysis, out)
    print(f"perceptron: {analysis.perceptron_seconds:.1f} s, LP: {analysis.lp_seconds:.1f} s; report: {paths['html']}")
    return 0
