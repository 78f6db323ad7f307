"""Command-line flags for how fast a run trains (precision, memory layout, compilation), shared by
``mtlab train`` and ``mtlab run``; they become ``train.*`` config overrides, so run records show them."""

from __future__ import annotations

import argparse


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="autocast precision (train.precision)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last layout (train.channels_last)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (train.compile)")


def speed_overrides(args: argparse.Namespace) -> list[str]:
    overrides = [f"train.precision={args.precision}"] if args.precision else []
    if args.channels_last:
        overrides.append("train.channels_last=true")
    if args.compile:
        overrides.append("train.compile=true")
    return overrides
