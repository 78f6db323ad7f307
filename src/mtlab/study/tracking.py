"""Feed experiment trackers from the study driver (live) or from a store (``mtlab export``:
:mod:`mtlab.report.tracking`, which adds the study's statistics), never twice.

Layout in every tracker: one experiment / project per study (``<study>-<budget>``), one parent run per variant, its
seeds' runs nested in it. A seed's run gets the resolved config flattened as params, tags (study, budget, variant,
``label.<axis>``, seed, run id, status), per-epoch values with ``step = epoch`` as the progress events arrive, then
its final test values, the selected epoch's validation values (``selected.val.*``), ``config.yaml`` and its status
(a failed run with its reason).
A variant's parent run gets the study's Δm (with its interval) and rank and ``report.html``, once its seeds have
all finished.

The results store records, per tracker and destination, each run's tracker id, the last epoch sent and the status
shown (:class:`~mtlab.study.store.TrackedRow`), written only after the tracker accepted it. So a resumed study
reopens its runs and sends only the epochs they lack, and an export sends only what is missing: exporting twice
creates nothing new. A tracker that raises (server down, disk full) costs one warning and is dropped for the rest
of the study; the store is untouched, and the next ``mtlab export DIR --format NAME`` catches up.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlab.errors import MtlabError
from mtlab.study.store import ResultStore, TrackedRow
from mtlab.trackers import TRACKERS
from mtlab.trackers.base import TrackedRun, Tracker, TrackerWarning, flatten
from mtlab.train.fit import FitObserver

STUDY_KEY = "study"
FINISHED = ("done", "failed")


def create_trackers(names: Sequence[str], experiment: str, directory: Path, to: str | None) -> dict[str, Tracker]:
    """The trackers ``names`` for ``experiment``, each at ``to`` or its default destination for ``directory``,
    created and checked (:meth:`~mtlab.trackers.base.Tracker.check`) before anything is trained.

    Raises a one-line :class:`MtlabError` for an unknown name, a missing client, or a tracker that cannot start
    (its client's own message, with the tracker's advice); the trackers already created are closed."""
    trackers: dict[str, Tracker] = {}
    try:
        for name in dict.fromkeys(names):
            if name not in TRACKERS:
                raise MtlabError(f"--track: no tracker {name!r}; choose from {', '.join(TRACKERS.names())}")
            kind = TRACKERS.get(name)
            destination = to or kind.default_destination(directory)
            try:
                tracker = kind(experiment, destination)
                trackers[name] = tracker
                tracker.check()
            except MtlabError:
                raise
            except Exception as e:  # the client refuses: the user's setup to fix, before any training
                message = " ".join(str(e).split()).rstrip(".") or "(no message)"
                advice = kind.start_advice(destination)
                raise MtlabError(f"{name} tracking cannot start at {destination}: {type(e).__name__}: {message}"
                                 + (f"; {advice}" if advice else "")) from None  # fmt: skip
    except BaseException:
        for tracker in trackers.values():
            with contextlib.suppress(Exception):
                tracker.close()
        raise
    return trackers


class _Guarded:
    """Trackers that may fail: a failing one is one warning, then dropped; the others go on."""

    def __init__(self, trackers: Mapping[str, Tracker], remedy: str):
        self.trackers: dict[str, Tracker] = dict(trackers)
        self.remedy = remedy  # what happens next, and what sends what a failed tracker missed ({name}: the tracker)

    def each(self, what: str, action: Callable[[str, Tracker], None]) -> None:
        for name, tracker in list(self.trackers.items()):
            try:
                action(name, tracker)
            except Exception as e:  # any failure of a view must not stop the study
                del self.trackers[name]
                with contextlib.suppress(Exception):
                    tracker.close()
                warnings.warn(
                    f"{name} tracking stopped ({what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                    f"; {self.remedy.format(name=name)}",
                    TrackerWarning,
                    stacklevel=2,
                )

    def close(self) -> None:
        self.each("closing", lambda name, tracker: tracker.close())


class Tracking(_Guarded):
    """Send a study's runs (in ``store``, of the study at ``directory``) to ``trackers`` (:func:`create_trackers`).

    Live: :meth:`observer` wraps the driver's observer; :meth:`run_started`, :meth:`epoch` and :meth:`run_ended`
    follow each run. After the fact: :meth:`catch_up` sends every finished run still missing, then the variants'
    Δm, ranks and the report.
    """

    def __init__(self, trackers: Mapping[str, Tracker], store: ResultStore, directory: Path, remedy: str = ""):
        remedy = remedy or f"the study goes on, and `mtlab export {directory} --format {{name}}` sends what it missed"
        super().__init__(trackers, remedy)
        self.store = store
        self.directory = Path(directory)
        self.info = store.info()
        self.rows = {name: store.tracked(name, t.destination) for name, t in self.trackers.items()}
        self.opened: set[tuple[str, str]] = set()  # (tracker, key) opened by this process
        self.sent = {name: Sent(t.destination) for name, t in self.trackers.items()}  # what this process sent

    # ---------------------------------------------------------------------------------------------- identity

    def _study_tags(self) -> dict[str, str]:
        budget = self.info.get("budget")
        return {"study": str(self.info.get("name", "")), **({"budget": str(budget)} if budget else {})}

    def _seed_run(self, run_id: str, record: Mapping[str, Any]) -> TrackedRun:
        labels = {f"label.{axis}": str(value) for axis, value in record["labels"].items()}
        tags = {**self._study_tags(), "variant": record["variant"], **labels, "seed": str(record["seed"]),
                "run_id": run_id, "status": record["status"]}  # fmt: skip
        return TrackedRun(run_id, f"{record['variant']} s{record['seed']}", record["variant"], int(record["seed"]),
                          flatten(record["config"]), tags)  # fmt: skip

    def _set(self, name: str, key: str, row: TrackedRow) -> None:
        self.store.set_tracked(name, self.trackers[name].destination, key, row)
        self.rows[name][key] = row

    def _open_parent(self, name: str, tracker: Tracker, record: Mapping[str, Any]) -> str:
        """The tracker's id of the parent run of ``record``'s variant (and its experiment), opened in this process."""
        rows = self.rows[name]
        if (name, STUDY_KEY) not in self.opened:
            existing = rows.get(STUDY_KEY)
            experiment = tracker.open_experiment(existing.tracker_id if existing else None)
            if existing is None:
                self._set(name, STUDY_KEY, TrackedRow(experiment))
            self.opened.add((name, STUDY_KEY))
        key = f"variant:{record['variant']}"
        if (name, key) not in self.opened:
            existing = rows.get(key)
            tags = {**self._study_tags(), "variant": record["variant"]}
            tags.update({f"label.{axis}": str(value) for axis, value in record["labels"].items()})
            parent = TrackedRun(key, record["variant"], record["variant"], None, {}, tags)
            parent_id = tracker.open_run(parent, None, existing.tracker_id if existing else None)
            if existing is None:
                self._set(name, key, TrackedRow(parent_id))
            self.opened.add((name, key))
        return rows[key].tracker_id

    def _open(self, name: str, tracker: Tracker, run_id: str, record: Mapping[str, Any]) -> str:
        """The tracker's id of the run ``run_id`` (nested in its variant's parent), opened in this process."""
        parent_id = self._open_parent(name, tracker, record)
        rows = self.rows[name]
        if (name, run_id) not in self.opened:
            existing = rows.get(run_id)
            tracked_id = tracker.open_run(self._seed_run(run_id, record), parent_id,
                                          existing.tracker_id if existing else None)  # fmt: skip
            self._set(name, run_id, TrackedRow(tracked_id, existing.epochs if existing else 0, "running"))
            self.opened.add((name, run_id))
        return rows[run_id].tracker_id

    # -------------------------------------------------------------------------------------------------- live

    def observer(self, inner):
        """A study observer that forwards everything to ``inner`` and follows the runs into the trackers."""
        return TrackingObserver(self, inner)

    def run_started(self, run_id: str) -> None:
        record = self.store.run_record(run_id)
        self.each(f"opening run {run_id}", lambda name, tracker: self._open(name, tracker, run_id, record))

    def epoch(self, run_id: str, record: Mapping[str, float]) -> None:
        def send(name: str, tracker: Tracker) -> None:
            row = self.rows[name].get(run_id)
            if row is None or int(record["epoch"]) <= row.epochs:
                return  # sent before this attempt was killed (a resumed run retrains the same epochs)
            tracker.log_epochs(row.tracker_id, [dict(record)])
            self._set(name, run_id, TrackedRow(row.tracker_id, int(record["epoch"]), row.status))

        self.each(f"epoch {record.get('epoch')} of {run_id}", send)

    def run_ended(self, run_id: str) -> None:
        record = self.store.run_record(run_id)
        self.each(f"finishing run {run_id}", lambda name, tracker: self._finish(name, tracker, run_id, record))

    def _finish(self, name: str, tracker: Tracker, run_id: str, record: Mapping[str, Any]) -> None:
        status = record["status"]
        row = self.rows[name].get(run_id)
        if status not in FINISHED or (row is not None and row.status == status):
            return  # still to train, or the tracker shows it as it is
        tracked_id = self._open(name, tracker, run_id, record)
        sent = self.rows[name][run_id].epochs
        history = [r for r in self.store.run_history(run_id) if r["epoch"] > sent]
        if history:
            tracker.log_epochs(tracked_id, history)
            sent = max(int(r["epoch"]) for r in history)
        tracker.log_final(tracked_id, final_values(self.store.run_final(run_id)), {"status": status})
        config = self.directory / str(record["run_dir"] or Path("runs") / run_id) / "config.yaml"
        if config.is_file():
            tracker.log_artifact(tracked_id, config)
        tracker.end_run(tracked_id, status, record["reason"])
        self._set(name, run_id, TrackedRow(tracked_id, sent, status))
        self.sent[name].runs += 1
        self.sent[name].epochs += len(history)

    # -------------------------------------------------------------------------------------------- after the fact

    def catch_up(self, values: Mapping[str, Mapping[str, float]]) -> None:
        """Send every finished run the trackers lack, then each variant's Δm, rank (``values``: variant -> name ->
        value, :func:`mtlab.report.tracking.variant_values`) and the report (once all its seeds have finished, its
        parent run ends)."""
        runs = self.store.statuses()
        for run_id, status in runs.items():
            if status in FINISHED:
                self.run_ended(run_id)
        self._summarize(runs, values)

    def _summarize(self, runs: Mapping[str, str], values: Mapping[str, Mapping[str, float]]) -> None:
        report = self.directory / "report.html"
        by_variant: dict[str, list[str]] = {}
        for run_id in runs:
            by_variant.setdefault(self.store.run_record(run_id)["variant"], []).append(run_id)

        def send(name: str, tracker: Tracker) -> None:
            for variant, run_ids in by_variant.items():
                key = f"variant:{variant}"
                statuses = [runs[r] for r in run_ids]
                finished = [r for r in run_ids if runs[r] in FINISHED]
                if not finished:
                    continue
                ended = len(finished) == len(run_ids)
                status = ("done" if "done" in statuses else "failed") if ended else "running"
                row = self.rows[name].get(key)
                if row is not None and row.status != "running" and row.status == status:
                    continue  # already summarised, and nothing about the variant changed since
                parent_id = self._open_parent(name, tracker, self.store.run_record(finished[0]))
                tracker.log_final(parent_id, _finite(values.get(variant, {})),
                                  {"runs": str(len(run_ids)), "done": str(statuses.count("done"))})  # fmt: skip
                if ended:
                    if report.is_file():
                        tracker.log_artifact(parent_id, report)
                    tracker.end_run(parent_id, status, None)
                self._set(name, key, TrackedRow(parent_id, 0, status))

        self.each("summarising the variants", send)


class TrackingObserver:
    """The driver's observer (progress display) plus the trackers: every hook goes to both."""

    def __init__(self, tracking: Tracking, inner):
        self.tracking = tracking
        self.inner = inner

    def on_executor(self, description: dict[str, Any]) -> None:
        self.inner.on_executor(description)

    def on_study_start(self, total: int, done: int, todo: int) -> None:
        self.inner.on_study_start(total, done, todo)

    def run_observer(self, run):
        return self.group_observers([run])[0]

    def group_observers(self, runs: list) -> list[FitObserver | None]:
        from mtlab.train.run import FanOut

        observers = []
        for run, inner in zip(runs, self.inner.group_observers(runs), strict=True):
            self.tracking.run_started(run.run_id)
            observers.append(FanOut(inner, _EpochsToTrackers(self.tracking, run.run_id)))
        return observers

    def on_run_end(self, run, status: str, reason: str | None) -> None:
        self.tracking.run_ended(run.run_id)
        self.inner.on_run_end(run, status, reason)


class _EpochsToTrackers(FitObserver):
    def __init__(self, tracking: Tracking, run_id: str):
        self.tracking, self.run_id = tracking, run_id

    def on_epoch_end(self, record: dict[str, float]) -> None:
        self.tracking.epoch(self.run_id, record)


def _finite(values: Mapping[str, float]) -> dict[str, float]:
    """Values a tracker can show (NaN: no Δm without a control, say - left out rather than logged as NaN)."""
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


def final_values(values: Mapping[str, float]) -> dict[str, float]:
    """A run's final values as a tracker shows them: test values as they are (``test.item.acc``), the selected
    epoch's validation values as ``selected.val.item.acc`` (under their own name, they would add a point to the
    per-epoch ``val.item.acc`` curve)."""
    return _finite({(f"selected.{k}" if k.startswith("val.") else k): v for k, v in values.items()})


@dataclass
class Sent:
    """What a tracker at ``destination`` was sent: finished runs (with their final values) and their epochs."""

    destination: str
    runs: int = 0
    epochs: int = 0

    def __str__(self) -> str:
        """``sent 4 runs (8 epochs) to DEST``, or that the destination had them all."""
        if not self.runs:
            return f"nothing new for {self.destination}: it holds every finished run already"
        return f"sent {self.runs} run{'s' if self.runs != 1 else ''} ({self.epochs} epochs) to {self.destination}"


def experiment_name(info: Mapping[str, Any]) -> str:
    """The tracker experiment / project of a study: ``<study>-<budget>``, as its default directory is named."""
    budget = info.get("budget")
    return f"{info['name']}-{budget}" if budget else str(info["name"])


class RunTracking(_Guarded, FitObserver):
    """``mtlab train --track``: one run, outside any study, followed live (a :class:`FitObserver`).

    Experiment ``mtlab-train``, by default in the run directory itself, as ``mtlab run`` writes into its study
    directory (:attr:`destinations` says where, for the command to print); the run is named after its directory.
    There is no store to catch up from: a tracker that fails is one warning, and the run directory keeps
    everything."""

    EXPERIMENT = "mtlab-train"

    def __init__(self, names: Sequence[str], config: Any, out: Path, to: str | None = None):
        out = Path(out)
        super().__init__(create_trackers(names, self.EXPERIMENT, out, to),
                         "the run goes on, and its directory keeps everything")  # fmt: skip
        self.out = out
        tags = {"seed": str(config.seed), "run_dir": str(out), "status": "running"}
        self.run = TrackedRun(out.name, out.name, out.name, int(config.seed), flatten(config.model_dump(mode="json")),
                              tags)  # fmt: skip
        self.ids: dict[str, str] = {}

    @property
    def destinations(self) -> dict[str, str]:
        """Where each tracker still following the run writes."""
        return {name: tracker.destination for name, tracker in self.trackers.items()}

    def on_fit_start(self, epochs: int, batches_per_epoch: int) -> None:
        def start(name: str, tracker: Tracker) -> None:
            tracker.open_experiment(None)
            self.ids[name] = tracker.open_run(self.run, None, None)

        self.each("opening the run", start)

    def on_epoch_end(self, record: dict[str, float]) -> None:
        self.each(f"epoch {record.get('epoch')}",
                  lambda name, tracker: tracker.log_epochs(self.ids[name], [dict(record)]))  # fmt: skip

    def finish(self, values: Mapping[str, float], status: str = "done", reason: str | None = None) -> None:
        """Final values (test metrics, selected-epoch validation), ``config.yaml``, and the run's status."""

        def end(name: str, tracker: Tracker) -> None:
            if name not in self.ids:
                return  # the run stopped before its first epoch
            tracker.log_final(self.ids[name], final_values(values), {"status": status})
            if (self.out / "config.yaml").is_file():
                tracker.log_artifact(self.ids[name], self.out / "config.yaml")
            tracker.end_run(self.ids[name], status, reason)

        self.each("finishing the run", end)
        self.close()
