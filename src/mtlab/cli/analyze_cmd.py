"""``mtlab analyze ...``: look inside data and trained runs (PCA, separability, filters, feature maps,
activation maximisation, deep dream, transfer probes). Each analysis module adds its own subcommand."""

from __future__ import annotations

import argparse
import importlib

# Modules under mtlab.cli.analyze offering ``add_cli(subparsers)`` (each imports its analysis: torch).
ANALYSES = ("pca", "separability", "filters", "features", "maximize", "dream", "transfer")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="look inside data and trained runs (pictures and probes)",
        description="Analyses of datasets and trained runs; each writes PNG figures, the numbers behind them "
        "(CSV/JSON) and a self-contained HTML page into an output directory.",
    )
    # The analysis modules import torch: they add their sub-commands only when `mtlab analyze` is run.
    parser.build_when_used(_add_analyses)


def _add_analyses(parser: argparse.ArgumentParser) -> None:
    analyses = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    for name in ANALYSES:
        importlib.import_module(f"mtlab.cli.analyze.{name}").add_cli(analyses)
