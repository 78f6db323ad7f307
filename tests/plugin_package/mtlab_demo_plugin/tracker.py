"""Tracker ``demo_jsonl``: every call the study driver makes, one JSON line each, in ``DESTINATION/events.jsonl``.

A tracker is a :class:`~mtlab.trackers.base.Tracker` registered by name; it needs no client library (``extra`` is
empty) and its ``example`` destination - the default one - is a plain directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from mtlab.trackers import register_tracker
from mtlab.trackers.base import Tracker


@register_tracker("demo_jsonl")
class JsonLinesTracker(Tracker):
    extra = ""

    @classmethod
    def default_destination(cls, directory):
        return str(Path(directory).resolve() / "demo-tracker")

    def _write(self, event: str, **values) -> None:
        folder = Path(self.destination)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "events.jsonl", "a") as f:
            f.write(json.dumps({"event": event, **values}, default=str) + "\n")

    def open_experiment(self, existing):
        self._write("experiment", name=self.experiment)
        return existing or self.experiment

    def open_run(self, run, parent, existing):
        self._write("run", key=run.key, variant=run.variant, seed=run.seed, parent=parent)
        return existing or run.key

    def log_epochs(self, run_id, records):
        self._write("epochs", run=run_id, records=records)

    def log_final(self, run_id, values, tags):
        self._write("final", run=run_id, values=dict(values), tags=dict(tags))

    def log_artifact(self, run_id, path):
        self._write("artifact", run=run_id, name=Path(path).name)

    def end_run(self, run_id, status, reason):
        self._write("end", run=run_id, status=status, reason=reason)
