"""A run directory that can reproduce itself: resolved config, command, environment, history, metrics, checkpoint.

Layout::

    config.yaml      the resolved RunConfig (every default filled in)
    meta.json        argv, seed, device, data origin, environment (versions, git SHA), start/end times, status
    history.jsonl    one JSON record per epoch, appended as training goes (survives a crash)
    history.csv      the same table, written at the end
    metrics.json     final test metrics per task, best epoch, validation metrics, confusion matrices
    checkpoint.pt    the selected weights + what is needed to use them (input normalisation, the weighting method's
                     parameters and state); load with ``load_checkpoint``

Every file but the append-only ``history.jsonl`` is written atomically (:mod:`mtlab.atomic`), and ``meta.json``
says ``"status": "done"`` only after all the others are in place: a run killed at any moment is either finished,
with every file whole, or visibly not (:func:`is_finished`).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from mtlab import atomic
from mtlab.config.schema import RunConfig
from mtlab.errors import MtlabError
from mtlab.train.fit import FitObserver, FitResult


class RunDirectory:
    def __init__(self, path: Path, *, overwrite: bool = False):
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise MtlabError(f"{path}: exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise MtlabError(f"{path}: run directory exists and is not empty (choose another --out, or --overwrite)")
        path.mkdir(parents=True, exist_ok=True)
        atomic.remove_leftovers(path)  # of a writer killed in this directory before (its files are whole)
        self.path = path
        self.meta: dict[str, Any] = {}

    def start(self, config: RunConfig, *, argv: list[str], environment: dict[str, Any], origin: str) -> None:
        atomic.write_text(self.path / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        (self.path / "history.jsonl").write_text("")
        self.meta = {
            "status": "running",
            "argv": argv,
            "seed": config.seed,
            "data_origin": origin,
            "environment": environment,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._write_meta()

    def observer(self) -> FitObserver:
        """An observer that appends each epoch's record to ``history.jsonl`` as soon as it exists."""
        history = self.path / "history.jsonl"

        class _History(FitObserver):
            def on_epoch_end(self, record: dict[str, float]) -> None:
                with history.open("a") as f:
                    f.write(json.dumps(record) + "\n")

        return _History()

    def finish(self, result: FitResult, *, state_dict: dict[str, torch.Tensor], extras: dict[str, Any]) -> None:
        _write_csv(self.path / "history.csv", result.history)
        metrics = {
            "test": result.test,
            "val": result.val,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "stopped_early": result.stopped_early,
            "seconds": result.seconds,
            "confusion": result.confusion,
            **extras,
        }
        atomic.write_text(self.path / "metrics.json", json.dumps(metrics, indent=2))
        checkpoint = {
            "state_dict": state_dict,
            "normalizer": {"scale": result.normalizer.scale.cpu(), "shift": result.normalizer.shift.cpu()},
            "weighting": result.weighting_state,  # the method's parameters and state ({} for most methods)
            **{k: v for k, v in extras.items() if k in ("tasks", "task_types", "input_shape")},
        }
        with atomic.replacing(self.path / "checkpoint.pt") as temporary:
            torch.save(checkpoint, temporary)
        self.meta.update(status="done", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._write_meta()

    def fail(self, reason: str) -> None:
        self.meta.update(status="failed", reason=reason, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._write_meta()

    def _write_meta(self) -> None:
        atomic.write_text(self.path / "meta.json", json.dumps(self.meta, indent=2))


CHECKPOINT_KEYS = ("state_dict", "normalizer", "tasks", "input_shape")  # task_types: since typed tasks


def is_finished(path: Path | str) -> bool:
    """Whether the run directory ``path`` holds a finished run (``meta.json`` written last says ``done``)."""
    try:
        return json.loads((Path(path) / "meta.json").read_text()).get("status") == "done"
    except (OSError, ValueError, AttributeError):
        return False


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a run's checkpoint safely (``weights_only=True``: tensors and plain containers, never code).

    A file that is not one of mtlab's checkpoints (truncated, another program's, a state dict alone) is a
    :class:`MtlabError` naming it.
    """
    path = Path(path)
    remedy = "train the run again (`mtlab train`, or `mtlab run` for a study run)"
    if not path.is_file():
        raise MtlabError(f"{path}: no such checkpoint; {remedy}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch reports a damaged file with many types (RuntimeError, UnpicklingError, EOFError)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MtlabError(f"{path}: not a readable checkpoint ({reason}); {remedy}") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise MtlabError(f"{path}: not an mtlab checkpoint (no {', '.join(missing)}); {remedy}")
    return checkpoint


def _write_csv(path: Path, records: list[dict[str, float]]) -> None:
    columns: list[str] = []
    for record in records:
        columns += [k for k in record if k not in columns]
    with atomic.replacing(path) as temporary, temporary.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
