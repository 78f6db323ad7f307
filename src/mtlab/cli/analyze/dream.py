"""``mtlab analyze dream``: its options and what it prints; the analysis is :mod:`mtlab.analysis.dream`."""

from __future__ import annotations

import argparse

from mtlab.analysis.dream import DreamSettings, write_dream
from mtlab.cli.analyze import add_input_arguments, add_run_arguments


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dream",
        help="deep dream: amplify each conv layer's activations in chosen test images",
        description="Gradient ascent on test images (chosen by --index or --class, default examples 0 and 1) to "
        "increase the L2 norm of a layer's rectified activations, with octaves and jitter; one result per layer.",
    )
    add_run_arguments(parser, "dream")
    add_input_arguments(parser)
    d = DreamSettings()
    parser.add_argument("--steps", type=int, default=d.steps, help=f"steps per octave (default {d.steps})")
    parser.add_argument("--step-size", type=float, default=d.step_size, help=f"default {d.step_size}")
    parser.add_argument("--octaves", type=int, default=d.octaves, help=f"default {d.octaves}")
    parser.add_argument("--octave-scale", type=float, default=d.octave_scale, help=f"default {d.octave_scale}")
    parser.add_argument("--jitter", type=int, default=d.jitter, help=f"random roll in pixels (default {d.jitter})")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    print(f"dream: {write_dream(args)}")
    return 0
