"""A run directory that can reproduce itself: resolved config, command, environment, history, metrics, checkpoint.

Layout::

    config.yaml      the resolved RunConfig (every default filled in)
    meta.json        argv, seed, device, data origin, environment (versions, git SHA), start/end times, status
    history.jsonl    one JSON record per epoch, appended as training goes (survives a crash)
    history.csv      the same table, written at the end
    metrics.json     final test metrics per task, best epoch, validation metrics, confusion matrices
    checkpoint.pt    the selected weights + what is needed to use them (input normalisation, the weighting method's
                     parameters and state); load with ``load_checkpoint``
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml

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
        self.path = path
        self.meta: dict[str, Any] = {}

    def start(self, config: RunConfig, *, argv: list[str], environment: dict[str, Any], origin: str) -> None:
        (self.path / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
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
        (self.path / "metrics.json").write_text(json.dumps(metrics, indent=2))
        checkpoint = {
            "state_dict": state_dict,
            "normalizer": {"scale": result.normalizer.scale.cpu(), "shift": result.normalizer.shift.cpu()},
            "weighting": result.weighting_state,  # the method's parameters and state ({} for most methods)
            **{k: v for k, v in extras.items() if k in ("tasks", "input_shape")},
        }
        torch.save(checkpoint, self.path / "checkpoint.pt")
        self.meta.update(status="done", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._write_meta()

    def fail(self, reason: str) -> None:
        self.meta.update(status="failed", reason=reason, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._write_meta()

    def _write_meta(self) -> None:
        (self.path / "meta.json").write_text(json.dumps(self.meta, indent=2))


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a run's checkpoint safely (``weights_only=True``: tensors and plain containers, never code)."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


def _write_csv(path: Path, records: list[dict[str, float]]) -> None:
    columns: list[str] = []
    for record in records:
        columns += [k for k in record if k not in columns]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
