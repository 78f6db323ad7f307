"""TensorBoard (``pip install 'mtlab[tensorboard]'``): event files under ``DIR/tensorboard`` (or ``--to``).

One TensorBoard run per variant (``<variant>/``: Δm and rank) with each seed's run beneath it
(``<variant>/<run id>/``: per-epoch scalars with ``step = epoch``, final test values, tags and ``config.yaml`` as
text). Each seed's run is an HParams session (the resolved config as hyperparameters, the final test values as
metrics, its status), so the runs compare in the HParams tab. See it with ``tensorboard --logdir DIR/tensorboard``.
Written with :class:`torch.utils.tensorboard.SummaryWriter` (which needs the ``tensorboard`` package).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtlab.trackers import TRACKERS
from mtlab.trackers.base import TrackedRun, Tracker, check_directory, import_client

TEXT_ARTIFACTS = (".yaml", ".yml", ".json", ".txt", ".md")  # shown in the Text tab; a report.html is not


def _hparam(value: str) -> Any:
    """A flattened config value as the HParams tab compares it: numbers and booleans as such, the rest as text."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return parsed if isinstance(parsed, (bool, int, float, str)) else value


def _hparams_summary(tag: str, **data: Any):
    """A summary for the HParams plugin (``experiment``, ``session_start_info`` or ``session_end_info``), built
    without TensorFlow (TensorBoard's own helpers need it)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    content = plugin_data_pb2.HParamsPluginData(**data)
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(content))])


def _directory_name(name: str) -> str:
    return re.sub(r"[^\w\-.=,+]", "_", name)


@TRACKERS.register("tensorboard")
class TensorBoardTracker(Tracker):
    extra = "tensorboard"

    def __init__(self, experiment: str, destination: str):
        super().__init__(experiment, destination)
        import_client("tensorboard", self.extra)
        self.root = Path(destination)
        self._writers: dict[str, Any] = {}
        self._hparams: dict[str, dict[str, Any]] = {}
        self._step: dict[str, int] = {}  # run -> the last epoch logged (final values go at that step)
        self._metrics: dict[str, list[str]] = {}  # run -> its final values' names (the HParams tab's metrics)

    @classmethod
    def default_destination(cls, directory: Path) -> str:
        return str(Path(directory).resolve() / "tensorboard")

    def check(self) -> None:
        check_directory(self.destination)

    def _writer(self, run_id: str):
        if run_id not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            self._writers[run_id] = SummaryWriter(log_dir=str(self.root / run_id))
        return self._writers[run_id]

    def open_experiment(self, existing: str | None) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        return existing or self.experiment

    def open_run(self, run: TrackedRun, parent: str | None, existing: str | None) -> str:
        from tensorboard.plugins.hparams import metadata, plugin_data_pb2

        # <variant>/ for a variant's parent run, <variant>/<run id>/ for its seeds, <key>/ for a run on its own.
        if run.seed is None:
            run_id = existing or _directory_name(run.variant)
        else:
            run_id = existing or (f"{parent}/" if parent is not None else "") + _directory_name(run.key)
        writer = self._writer(run_id)
        if run.seed is not None:
            self._hparams[run_id] = {k: _hparam(v) for k, v in {**run.params, **run.tags}.items()}
            if existing is None:
                start = plugin_data_pb2.SessionStartInfo(group_name=run.variant, start_time_secs=time.time())
                for key, value in self._hparams[run_id].items():
                    if isinstance(value, bool):
                        start.hparams[key].bool_value = value
                    elif isinstance(value, (int, float)):
                        start.hparams[key].number_value = value
                    else:
                        start.hparams[key].string_value = value
                summary = _hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=start)
                writer.file_writer.add_summary(summary)
        if existing is None:
            writer.add_text("tags", "\n\n".join(f"**{k}**: {v}" for k, v in run.tags.items()), 0)
        return run_id

    def log_epochs(self, run_id: str, records: list[dict[str, float]]) -> None:
        writer = self._writer(run_id)
        for record in records:
            step = int(record["epoch"])
            self._step[run_id] = max(self._step.get(run_id, 0), step)
            for key, value in record.items():
                if key != "epoch":
                    writer.add_scalar(key, float(value), step)
        writer.flush()

    def log_final(self, run_id: str, values: Mapping[str, float], tags: Mapping[str, str]) -> None:
        writer = self._writer(run_id)
        for key, value in values.items():
            writer.add_scalar(key, float(value), self._step.get(run_id, 0))
        if tags:
            writer.add_text("tags", "\n\n".join(f"**{k}**: {v}" for k, v in tags.items()), 1)
        self._metrics.setdefault(run_id, []).extend(k for k in values if k not in self._metrics[run_id])
        writer.flush()

    def log_artifact(self, run_id: str, path: Path) -> None:
        if path.suffix in TEXT_ARTIFACTS:
            self._writer(run_id).add_text(path.name, f"```\n{path.read_text()}\n```", 0)

    def end_run(self, run_id: str, status: str, reason: str | None) -> None:
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        writer = self._writer(run_id)
        if reason:
            writer.add_text("reason", reason, 0)
        if run_id in self._hparams:
            hparams = self._hparams[run_id]
            kinds = {bool: api_pb2.DATA_TYPE_BOOL, str: api_pb2.DATA_TYPE_STRING}
            infos = [api_pb2.HParamInfo(name=k, type=kinds.get(type(v), api_pb2.DATA_TYPE_FLOAT64)) for k, v in
                     hparams.items()]  # fmt: skip
            metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in
                       self._metrics.get(run_id, [])]  # fmt: skip
            experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics, time_created_secs=time.time())
            writer.file_writer.add_summary(_hparams_summary(metadata.EXPERIMENT_TAG, experiment=experiment))
            ended = plugin_data_pb2.SessionEndInfo(
                status=api_pb2.STATUS_SUCCESS if status == "done" else api_pb2.STATUS_FAILURE, end_time_secs=time.time()
            )
            writer.file_writer.add_summary(_hparams_summary(metadata.SESSION_END_INFO_TAG, session_end_info=ended))
        writer.close()
        del self._writers[run_id]

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
