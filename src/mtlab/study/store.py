"""The results store: one SQLite file per study directory (stdlib ``sqlite3``, WAL journal).

Only the driver process writes. A run's results (history, final metrics, confusion matrices, status) are written in
one transaction, so a study killed at any moment leaves every run either fully recorded or not at all; a run left
``running`` by a killed driver is simply run again. Readers (reports, exports) get pandas frames and never parse
printed text; :meth:`ResultStore.snapshot` gives them one consistent view of a store a driver is still writing.

Tables::

    study      key -> value         the spec (YAML), budget, overrides, command, environment, executor, and
                                    ``superseded``: the definitions a ``--redefine`` replaced (their runs stay)
    runs       one row per run      id, variant, labels, seed, resolved config, status (+ reason), timings,
                                    parameters, environment, run directory, attempts, active (in the current definition)
    history    run, epoch, metric   per-epoch values (train/val loss and every metric of each task's type, lr,
                                    seconds)
    metrics    run, split, task,    final values: test loss and metrics per task (task '' = the weighted total),
               metric               and the validation values of the selected epoch
    confusion  run, task            test confusion matrix (rows = true class) as JSON, for types that have one
    tasks      run, task            what the run's task is (:class:`TaskInfo` as JSON): its type, primary metric,
                                    every metric's direction - from the run config when the run is added, from the
                                    finished run's ``task_types`` when it is recorded
    tracked    tracker,             what an experiment tracker (:mod:`mtlab.trackers`) holds of the study: per
               destination, key     destination (a tracking URI or directory) and key (a run id, ``variant:<name>``
                                    or ``study``) the tracker's own id, the last epoch logged and the status shown,
                                    so a resumed study or a second export neither duplicates nor loses anything

Times of a finished run: ``started`` and ``finished`` (its wall time, the worker's start-up and data loading
included), ``seconds`` (the fit: data to device, epochs, test) and ``train_seconds`` (the epochs alone, the sum of
the history's ``seconds``). A store written before ``train_seconds`` gets the column, empty; readers add up the
history then.

A store written before typed tasks has no ``tasks`` table: opening it adds the (empty) table, and a task without a
row reads as the classification task every run then trained (``TaskInfo(name)``: ``multiclass``, primary ``acc``,
``loss`` lower and ``acc`` higher is better). Nothing else changes, so such a store reports as before. A store
written before trackers has no ``tracked`` table: opening it adds the (empty) table, and the next ``--track`` or
``mtlab export --format mlflow|tensorboard|wandb`` logs every run.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlab.errors import MtlabError
from mtlab.study.spec import RunSpec

SCHEMA = """
CREATE TABLE IF NOT EXISTS study (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    variant TEXT NOT NULL,
    labels TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    reason TEXT,
    started REAL,
    finished REAL,
    seconds REAL,
    train_seconds REAL,
    parameters INTEGER,
    best_epoch INTEGER,
    epochs_run INTEGER,
    environment TEXT,
    run_dir TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    position INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS history (
    run_id TEXT NOT NULL REFERENCES runs(run_id), epoch INTEGER NOT NULL, metric TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, epoch, metric)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id), split TEXT NOT NULL, task TEXT NOT NULL, metric TEXT NOT NULL,
    value REAL, PRIMARY KEY (run_id, split, task, metric)
);
CREATE TABLE IF NOT EXISTS confusion (
    run_id TEXT NOT NULL REFERENCES runs(run_id), task TEXT NOT NULL, matrix TEXT NOT NULL,
    PRIMARY KEY (run_id, task)
);
CREATE TABLE IF NOT EXISTS tasks (
    run_id TEXT NOT NULL REFERENCES runs(run_id), task TEXT NOT NULL, description TEXT NOT NULL,
    PRIMARY KEY (run_id, task)
);
CREATE TABLE IF NOT EXISTS tracked (
    tracker TEXT NOT NULL, destination TEXT NOT NULL, key TEXT NOT NULL, tracker_id TEXT NOT NULL,
    epochs INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'running',
    PRIMARY KEY (tracker, destination, key)
);
"""

UNFINISHED = ("pending", "running")
DATA_NOTES = "data_notes"
"""The study info key of what the data decided that the run configs did not say (a task's classes found in its
column: :attr:`mtlab.data.dataset.Dataset.notes`), which the report's header shows."""
ADDED_RUN_COLUMNS = {"train_seconds": "REAL"}
"""Columns of ``runs`` a store written before them lacks: opening it adds them, NULL in its finished runs."""


# ------------------------------------------------------------------------------------------------- task info


@dataclass(frozen=True)
class TaskInfo:
    """What a study's task is, as the report needs it without the dataset: its type, the metric tables and rankings
    lead with (``primary``) and every reported metric's direction (``"max"``: higher is better; ``loss`` included).

    ``confusion``: whether the type records a confusion matrix (classification types). The defaults,
    ``TaskInfo(name)``, are what every task was before typed tasks: multiclass, scored by accuracy."""

    name: str
    type: str = "multiclass"
    primary: str = "acc"
    directions: Mapping[str, str] = field(default_factory=lambda: {"loss": "min", "acc": "max"})
    confusion: bool = True

    @property
    def metrics(self) -> list[str]:
        """The reported metrics besides ``loss``, the primary first, then in the type's order."""
        rest = [m for m in self.directions if m not in ("loss", self.primary)]
        return ([self.primary] if self.primary in self.directions else []) + rest

    def higher_is_better(self, metric: str) -> bool:
        try:
            return self.directions[metric] == "max"
        except KeyError:
            reported = list(self.directions)
            raise KeyError(f"task {self.name} ({self.type}) has no metric {metric!r}; it reports {reported}") from None

    def measure(self, metric: str | None = None) -> tuple[str, bool]:
        """``(metric, higher_is_better)`` for ``metric`` (default: the primary one), as the statistics take it."""
        metric = metric or self.primary
        return metric, self.higher_is_better(metric)

    def restricted(self, present: Iterable[str]) -> TaskInfo:
        """The same task with only the metrics in ``present`` (and ``loss`` and the primary one): a run recorded
        before its type reported a metric (e.g. ``f1`` before typed tasks) has no column for it."""
        keep = {"loss", self.primary, *present}
        return TaskInfo(self.name, self.type, self.primary, {m: d for m, d in self.directions.items() if m in keep},
                        self.confusion)  # fmt: skip

    def description(self) -> dict[str, Any]:
        return {"type": self.type, "primary": self.primary, "metrics": dict(self.directions),
                "confusion": self.confusion}  # fmt: skip

    @classmethod
    def from_description(cls, name: str, description: Mapping[str, Any]) -> TaskInfo:
        """From a :meth:`~mtlab.tasks.Task.describe` (a run's ``metrics.json`` ``task_types``) or a stored row."""
        kind = str(description.get("type") or "multiclass")
        directions = dict(description.get("metrics") or {"loss": "min", "acc": "max"})
        directions.setdefault("loss", "min")
        confusion = description.get("confusion")
        return cls(
            name,
            kind,
            str(description.get("primary") or ("acc" if "acc" in directions else next(iter(directions)))),
            directions,
            bool(confusion) if confusion is not None else _type_has_confusion(kind),
        )


def config_task_info(config: Any) -> dict[str, TaskInfo]:
    """Each trained task of a :class:`~mtlab.config.schema.RunConfig`, from its dataset's task types."""
    from mtlab.tasks import TASK_TYPES

    info = {}
    for task, type_name in config.task_type_names().items():
        kind = TASK_TYPES.get(type_name)
        directions = {"loss": "min", **kind.metrics}
        info[task] = TaskInfo(task, type_name, kind.primary, directions, bool(kind.has_confusion))
    return info


def _type_has_confusion(type_name: str) -> bool:
    try:
        from mtlab.tasks import TASK_TYPES

        return bool(TASK_TYPES.get(type_name).has_confusion)
    except (KeyError, MtlabError):
        # The type cannot be asked (a plug-in no longer installed, or the plug-ins fail to load): only the type of
        # the records from before typed tasks - TaskInfo's default - is known to record a confusion matrix.
        return type_name == TaskInfo.type and TaskInfo.confusion


@dataclass(frozen=True)
class TrackedRow:
    """An experiment tracker's own id for a run (or a variant's parent run, or the study's experiment), the last
    epoch it was sent and the status it shows (``running``, ``done``, ``failed``)."""

    tracker_id: str
    epochs: int = 0
    status: str = "running"


class ResultStore:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # explicit transactions below
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a committed run survives power loss, not just a kill
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            self._add_columns()
        except sqlite3.DatabaseError as e:
            self.db.close()
            if isinstance(e, sqlite3.OperationalError):
                raise  # locked, read-only, out of space: not a damaged file
            raise damaged_store(self.path, e) from None
        self._depth = 0  # nesting of open transactions (see atomic)

    def _add_columns(self) -> None:
        """Columns added to ``runs`` since the first stores, added (empty) to a store written before them."""
        have = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
        for column, sql_type in ADDED_RUN_COLUMNS.items():
            if column not in have:
                self.db.execute(f"ALTER TABLE runs ADD COLUMN {column} {sql_type}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ writing

    def set_info(self, **items: Any) -> None:
        with self._transaction():
            self.db.executemany(
                "INSERT INTO study (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(k, json.dumps(v)) for k, v in items.items()],
            )

    def append_info(self, key: str, item: Any) -> None:
        """Add ``item`` to the list stored under ``key`` (one entry per session, say: each start of training)."""
        with self._transaction():
            row = self.db.execute("SELECT value FROM study WHERE key = ?", (key,)).fetchone()
            items = json.loads(row[0]) if row is not None else []
            self.db.execute(
                "INSERT INTO study (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps([*items, item])),
            )

    def sync_runs(self, runs: Iterable[RunSpec]) -> None:
        """Add runs not yet stored as pending; mark exactly these runs active (in the current spec and budget).

        Each run's tasks (type, primary metric, directions) are recorded from its config unless already known."""
        runs = list(runs)
        described: dict[str, dict[str, TaskInfo]] = {}  # config JSON -> its tasks: variants share a few configs
        with self._transaction():
            self.db.execute("UPDATE runs SET active = 0")
            for position, run in enumerate(runs):
                self.db.execute(
                    "INSERT INTO runs (run_id, variant, labels, seed, config, status, position) "
                    "VALUES (?, ?, ?, ?, ?, 'pending', ?) "
                    "ON CONFLICT(run_id) DO UPDATE SET active = 1, position = excluded.position, "
                    "variant = excluded.variant, labels = excluded.labels",
                    (
                        run.run_id,
                        run.variant,
                        json.dumps(run.labels),
                        run.seed,
                        json.dumps(run.config.model_dump(mode="json")),
                        position,
                    ),
                )
                key = run.config.model_dump_json()
                if key not in described:
                    described[key] = config_task_info(run.config)
                self.db.executemany(
                    "INSERT OR IGNORE INTO tasks (run_id, task, description) VALUES (?, ?, ?)",
                    [(run.run_id, t, json.dumps(i.description())) for t, i in described[key].items()],
                )

    def mark_running(self, run_id: str, run_dir: Path) -> None:
        with self._transaction():
            self.db.execute(
                "UPDATE runs SET status = 'running', reason = NULL, started = ?, run_dir = ?, "
                "attempts = attempts + 1 WHERE run_id = ?",
                (time.time(), str(run_dir), run_id),
            )

    def release_running(self) -> int:
        """Put the runs left ``running`` back to ``pending`` (a driver stopped by ^C or SIGTERM: nothing trains them
        any more); returns how many of the study's runs are done, which the store keeps."""
        if self.db.in_transaction:  # the signal landed between a BEGIN and its bookkeeping: drop that write
            self.db.execute("ROLLBACK")
            self._depth = 0
        with self._transaction():
            self.db.execute("UPDATE runs SET status = 'pending' WHERE status = 'running'")
        return sum(s == "done" for s in self.statuses().values())

    def record_done(
        self,
        run_id: str,
        result: Any,
        *,
        parameters: int,
        environment: dict[str, Any],
        task_types: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Store a finished run (a :class:`~mtlab.train.fit.FitResult`) in one transaction.

        ``task_types``: the run's ``{task: Task.describe()}`` (its ``metrics.json`` ``task_types``), which replaces
        what :meth:`sync_runs` recorded from the config."""
        history = [
            (run_id, int(record["epoch"]), key, float(value))
            for record in result.history
            for key, value in record.items()
            if key != "epoch"
        ]
        metrics = [(run_id, *_split_task_metric(key), float(v)) for key, v in {**result.test, **result.val}.items()]
        confusion = [(run_id, task, json.dumps(matrix)) for task, matrix in result.confusion.items()]
        with self._transaction():
            self._clear(run_id)
            self.db.executemany("INSERT INTO history VALUES (?, ?, ?, ?)", history)
            self.db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", metrics)
            self.db.executemany("INSERT INTO confusion VALUES (?, ?, ?)", confusion)
            if task_types:
                self.db.executemany(
                    "INSERT OR REPLACE INTO tasks (run_id, task, description) VALUES (?, ?, ?)",
                    [
                        (run_id, task, json.dumps(TaskInfo.from_description(task, d).description()))
                        for task, d in task_types.items()
                    ],
                )
            self.db.execute(
                "UPDATE runs SET status = 'done', reason = NULL, finished = ?, seconds = ?, train_seconds = ?, "
                "parameters = ?, best_epoch = ?, epochs_run = ?, environment = ? WHERE run_id = ?",
                (
                    time.time(),
                    result.seconds,
                    epochs_seconds(result.history),
                    parameters,
                    result.best_epoch,
                    len(result.history),
                    json.dumps(environment),
                    run_id,
                ),
            )

    def record_failed(self, run_id: str, reason: str) -> None:
        with self._transaction():
            self._clear(run_id)
            self.db.execute(
                "UPDATE runs SET status = 'failed', reason = ?, finished = ? WHERE run_id = ?",
                (reason, time.time(), run_id),
            )

    def set_tracked(self, tracker: str, destination: str, key: str, row: TrackedRow) -> None:
        """Record what ``tracker`` at ``destination`` now holds for ``key`` (see :meth:`tracked`)."""
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO tracked (tracker, destination, key, tracker_id, epochs, status) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (tracker, destination, key, row.tracker_id, row.epochs, row.status),
            )

    # ------------------------------------------------------------------------------------------------ reading

    def run_record(self, run_id: str) -> dict[str, Any]:
        """One run's row: variant, labels and config (parsed), seed, status, reason, run directory, ..."""
        cursor = self.db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        row = cursor.fetchone()
        if row is None:
            raise KeyError(f"no run {run_id!r} in {self.path}")
        record = dict(zip([c[0] for c in cursor.description], row, strict=True))
        record["labels"] = json.loads(record["labels"])
        record["config"] = json.loads(record["config"])
        return record

    def run_history(self, run_id: str) -> list[dict[str, float]]:
        """One run's history records in epoch order, each ``{"epoch": n, metric: value, ...}``."""
        records: dict[int, dict[str, float]] = {}
        for epoch, metric, value in self.db.execute(
            "SELECT epoch, metric, value FROM history WHERE run_id = ? ORDER BY epoch, rowid", (run_id,)
        ):
            records.setdefault(epoch, {"epoch": epoch})[metric] = value
        return list(records.values())

    def run_final(self, run_id: str) -> dict[str, float]:
        """One run's final values, named as in its history: ``test.item.acc``, ``test.loss``, ``val.item.loss``."""
        rows = self.db.execute("SELECT split, task, metric, value FROM metrics WHERE run_id = ?", (run_id,))
        return {".".join(p for p in (split, task, metric) if p): value for split, task, metric, value in rows}

    def tracked(self, tracker: str, destination: str) -> dict[str, TrackedRow]:
        """Key (run id, ``variant:<name>``, ``study``) -> what ``tracker`` at ``destination`` holds for it."""
        rows = self.db.execute(
            "SELECT key, tracker_id, epochs, status FROM tracked WHERE tracker = ? AND destination = ?",
            (tracker, destination),
        )
        return {key: TrackedRow(tracker_id, epochs, status) for key, tracker_id, epochs, status in rows}

    def info(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM study")}

    def statuses(self, active_only: bool = True) -> dict[str, str]:
        where = " WHERE active = 1" if active_only else ""
        return dict(self.db.execute(f"SELECT run_id, status FROM runs{where} ORDER BY position"))

    def first_config(self) -> dict[str, Any] | None:
        """The resolved config of the current definition's first run (None before there is one)."""
        row = self.db.execute("SELECT config FROM runs WHERE active = 1 ORDER BY position LIMIT 1").fetchone()
        return json.loads(row[0]) if row else None

    def runs_to_do(self, retry_failed: bool = False) -> list[str]:
        """Active runs not yet done, in study order (``running`` ones were interrupted)."""
        wanted = (*UNFINISHED, "failed") if retry_failed else UNFINISHED
        return [r for r, s in self.statuses().items() if s in wanted]

    def runs_frame(self, active_only: bool = True):
        import pandas as pd

        where = " WHERE active = 1" if active_only else ""
        frame = pd.read_sql_query(f"SELECT * FROM runs{where} ORDER BY position", self.db)
        frame["labels"] = frame["labels"].map(json.loads)
        return frame

    def metrics_frame(self, active_only: bool = True):
        """Final metrics joined with run identity: run_id, variant, seed, split, task, metric, value."""
        import pandas as pd

        where = " AND r.active = 1" if active_only else ""
        return pd.read_sql_query(
            "SELECT m.run_id, r.variant, r.seed, m.split, m.task, m.metric, m.value FROM metrics m "
            f"JOIN runs r USING (run_id) WHERE r.status = 'done'{where} ORDER BY r.position",
            self.db,
        )

    def history_frame(self, active_only: bool = True):
        """Per-epoch values joined with run identity: run_id, variant, seed, epoch, metric, value."""
        import pandas as pd

        where = " AND r.active = 1" if active_only else ""
        return pd.read_sql_query(
            "SELECT h.run_id, r.variant, r.seed, h.epoch, h.metric, h.value FROM history h "
            f"JOIN runs r USING (run_id) WHERE r.status = 'done'{where} ORDER BY r.position, h.epoch",
            self.db,
        )

    def task_info(self, active_only: bool = True, notes: list[str] | None = None) -> dict[str, TaskInfo]:
        """Every task recorded for the (active) runs, in study order: its first run's description. A task that
        runs describe differently (another type or primary metric) keeps the first and adds a line to ``notes``.
        Tasks of runs stored before typed tasks have no row (read them as ``TaskInfo(name)``)."""
        where = " WHERE r.active = 1" if active_only else ""
        rows = self.db.execute(
            f"SELECT t.task, t.description FROM tasks t JOIN runs r USING (run_id){where} ORDER BY r.position, t.rowid"
        )
        info: dict[str, TaskInfo] = {}
        for task, description in rows:
            found = TaskInfo.from_description(task, json.loads(description))
            first = info.setdefault(task, found)
            if (found.type, found.primary) != (first.type, first.primary) and notes is not None:
                message = (
                    f"task {task} is a {first.type} task (primary {first.primary}) in some runs and a {found.type} "
                    f"task (primary {found.primary}) in others; the report treats it as the first"
                )
                if message not in notes:
                    notes.append(message)
        return info

    def confusion(self, run_id: str) -> dict[str, list[list[int]]]:
        rows = self.db.execute("SELECT task, matrix FROM confusion WHERE run_id = ?", (run_id,))
        return {task: json.loads(matrix) for task, matrix in rows}

    # ----------------------------------------------------------------------------------------------- internals

    def _clear(self, run_id: str) -> None:
        for table in ("history", "metrics", "confusion"):
            self.db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read as of one moment: the reads inside see the store as it was at the first of them, even while a
        driver records runs (WAL readers keep their snapshot until the read transaction ends)."""
        self.db.execute("BEGIN DEFERRED")
        try:
            yield
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError):
                raise
            raise damaged_store(self.path, e) from None
        finally:
            if self.db.in_transaction:
                self.db.execute("COMMIT")

    def atomic(self) -> _Transaction:
        """Group several writes into one transaction (e.g. the runs of a seed group: all recorded, or none)."""
        return self._transaction()

    def _transaction(self) -> _Transaction:
        return _Transaction(self)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error): all of a write lands, or none of it.

    Nested uses join the outermost transaction.
    """

    def __init__(self, store: ResultStore):
        self.store = store

    def __enter__(self) -> None:
        if self.store._depth == 0:
            self.store.db.execute("BEGIN IMMEDIATE")
        self.store._depth += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        self.store._depth -= 1
        if self.store._depth == 0:
            self.store.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def epochs_seconds(history: Iterable[Mapping[str, Any]]) -> float | None:
    """The training time of a run: its epochs' ``seconds`` added up (training and validation; none of the worker's
    start-up, the data loading or the test evaluation). None for a history that records no time."""
    times = [float(record["seconds"]) for record in history if "seconds" in record]
    return sum(times) if times else None


def damaged_store(path: Path, error: sqlite3.DatabaseError) -> MtlabError:
    """The user's error for a store SQLite cannot read, and what they can do about it."""
    return MtlabError(
        f"{path}: damaged results store ({error}); the run directories beside it (runs/*/metrics.json, history.csv, "
        "checkpoint.pt) still hold every finished run - restore the file from a backup, or move it aside and run "
        "the study again (it starts a new store and trains the runs again)"
    )


def _split_task_metric(key: str) -> tuple[str, str, str]:
    """``test.item.acc`` -> (test, item, acc); ``test.loss`` -> (test, '', loss)."""
    parts = key.split(".")
    if len(parts) == 2:
        return parts[0], "", parts[1]
    return parts[0], ".".join(parts[1:-1]), parts[-1]
