"""``--track mlflow|tensorboard|wandb`` (several allowed) and ``--track-to URI``, shared by ``mtlab run`` and
``mtlab train``."""

from __future__ import annotations

import argparse

from mtlab.trackers import TRACKERS


def add_track_options(parser: argparse.ArgumentParser, default_place: str) -> None:
    names = TRACKERS.names()
    parser.add_argument(
        "--track",
        action="append",
        default=[],
        choices=names,
        metavar="|".join(names),
        help="follow the runs live in an experiment tracker (repeat for several; pip install 'mtlab[NAME]'): "
        f"MLflow (sqlite:///{default_place}/mlflow.db unless MLFLOW_TRACKING_URI is set), TensorBoard "
        f"({default_place}/tensorboard), W&B (offline in {default_place}/wandb unless logged in)",
    )
    parser.add_argument("--track-to", metavar="URI", help="where the tracker writes instead (one --track)")
