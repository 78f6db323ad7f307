"""``mtlab analyze pca``: its options and what it prints; the analysis is :mod:`mtlab.analysis.pca`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtlab.analysis.pca import analyze_pca, image_datasets, write_pca


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``pca`` to the ``mtlab analyze`` subcommands."""
    parser = subparsers.add_parser(
        "pca",
        help="explained variance and a 2-D projection of a dataset's pixels",
        description="PCA of the training pixels (in [0, 1]): explained-variance curve with the components for "
        "90/95/99%% marked, and train / test scatter plots of the first two components with per-class 95%% "
        "ellipses. Writes PNG, CSV, JSON and a self-contained report.html.",
    )
    parser.add_argument("--dataset", choices=image_datasets(), default="mnist")
    parser.add_argument("--task", help="colour by this task (default: the dataset's first)")
    parser.add_argument("--subset", type=_positive, help="fit on a stratified subset of this many training images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset draw")
    parser.add_argument("--data-dir", type=Path, help="directory holding the dataset files")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/analyze-pca-<dataset>)")
    parser.set_defaults(func=run_cli)
    return parser


def run_cli(args: argparse.Namespace) -> int:
    analysis = analyze_pca(args.dataset, task=args.task, subset=args.subset, seed=args.seed, data_dir=args.data_dir)
    out = args.out or Path("runs") / f"analyze-pca-{args.dataset}"
    paths = write_pca(analysis, out)
    print(
        f"{analysis.dataset}: {analysis.counts[0.95]} components keep 95% of the variance "
        f"(90%: {analysis.counts[0.90]}, 99%: {analysis.counts[0.99]}); PC1 {analysis.fit.ratios[0]:.3f}, "
        f"PC2 {analysis.fit.ratios[1]:.3f}"
    )
    print(f"report: {paths['html']}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value
