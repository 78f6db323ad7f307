"""Export a study for other tools, in one of the formats of :data:`~mtlab.report.export_formats.EXPORT_FORMATS`:
flat tables ``runs`` (one row per run) and ``epochs`` (per epoch) as CSV or Parquet, written here; the report's
tables as LaTeX (:mod:`mtlab.report.latex`).

Both tables are wide (one column per label and per metric) because that is what spreadsheets, R and pandas users
reach for first; the long form stays available from :class:`~mtlab.study.store.ResultStore`. Parquet needs
pyarrow, which mtlab does not depend on, so it is imported only when asked for.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pandas as pd

from mtlab import atomic
from mtlab.errors import MtlabError
from mtlab.report.export_formats import EXPORT_FORMATS
from mtlab.report.tables import store_path
from mtlab.study.store import ResultStore

RUN_COLUMNS = [
    "run_id",
    "variant",
    "seed",
    "status",
    "reason",
    "attempts",
    "seconds",
    "train_seconds",
    "parameters",
    "best_epoch",
    "epochs_run",
]
INTEGER_COLUMNS = ["seed", "attempts", "parameters", "best_epoch", "epochs_run"]
EPOCH_INDEX = ["run_id", "variant", "seed", "epoch"]


def export_tables(directory: Path, fmt: str = "csv", out: Path | None = None) -> list[Path]:
    """Write the study at ``directory`` in format ``fmt`` (a name of :data:`EXPORT_FORMATS`) to ``out`` (default
    ``<directory>/export``); return the paths written."""
    if fmt not in EXPORT_FORMATS:
        raise MtlabError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    chosen = EXPORT_FORMATS[fmt]
    if chosen.requires:
        try:
            importlib.import_module(chosen.requires)
        except ImportError:
            raise MtlabError(f"{fmt} export needs {chosen.requires}: pip install {chosen.requires}") from None
    writer = chosen.load()
    directory = Path(directory)
    store_path(directory)  # a user error naming the directory, before anything is written
    out = Path(out) if out is not None else directory / "export"
    if out.exists() and not out.is_dir():
        raise MtlabError(f"{out}: exists and is not a directory; choose another --out")
    return writer(directory, out)  # the writer makes ``out`` once it has read the store: a bad store writes nothing


def write_csv(directory: Path, out: Path) -> list[Path]:
    """``runs.csv`` and ``epochs.csv``."""
    return _write_flat(directory, out, "csv")


def write_parquet(directory: Path, out: Path) -> list[Path]:
    """``runs.parquet`` and ``epochs.parquet`` (pandas writes them with pyarrow, checked by :func:`export_tables`)."""
    return _write_flat(directory, out, "parquet")


def _write_flat(directory: Path, out: Path, fmt: str) -> list[Path]:
    with ResultStore(store_path(directory)) as store, store.snapshot():  # one moment, even while a driver writes
        runs = runs_table(store.runs_frame(), store.metrics_frame())
        epochs = epochs_table(store.history_frame())
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in (("runs", runs), ("epochs", epochs)):
        path = out / f"{name}.{fmt}"
        with atomic.replacing(path) as temporary:
            if fmt == "csv":
                frame.to_csv(temporary, index=False)
            else:
                frame.to_parquet(temporary, index=False)
        paths.append(path)
    return paths


def runs_table(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run: identity, ``label.<axis>`` columns, status, timings, where it ran, final metrics.

    Final metrics are named as in the run's history (``test.item.acc``, ``test.loss``, ``val.item.loss``) and are
    empty for runs that have not finished.
    """
    table = runs[RUN_COLUMNS].copy()
    labels = pd.DataFrame(runs["labels"].tolist(), index=runs.index)
    table = pd.concat([table.iloc[:, :2], labels.add_prefix("label."), table.iloc[:, 2:]], axis=1)
    environments = runs["environment"].map(lambda e: json.loads(e) if isinstance(e, str) else {})
    table["device"] = environments.map(lambda e: e.get("device"))
    table["git_sha"] = environments.map(lambda e: e.get("git_sha"))
    for column in INTEGER_COLUMNS:
        table[column] = table[column].astype("Int64")  # pending runs have none: keep integers, not 12.0
    if len(metrics):
        keys = metrics[["split", "task", "metric"]].itertuples(index=False)
        named = metrics.assign(name=[_metric_name(*key) for key in keys])
        wide = named.pivot_table(index="run_id", columns="name", values="value", aggfunc="first", sort=False)
        order = sorted(wide.columns, key=lambda name: (not name.startswith("test."), list(wide.columns).index(name)))
        table = table.merge(wide[order], left_on="run_id", right_index=True, how="left")
    return table.reset_index(drop=True)


def epochs_table(history: pd.DataFrame) -> pd.DataFrame:
    """One row per run and epoch, one column per recorded metric, runs in study order."""
    if history.empty:
        return pd.DataFrame(columns=EPOCH_INDEX)
    wide = history.pivot_table(index=EPOCH_INDEX, columns="metric", values="value", aggfunc="first", sort=False)
    wide = wide.reset_index()
    wide.columns.name = None
    position = {run: i for i, run in enumerate(dict.fromkeys(history["run_id"]))}
    wide = wide.sort_values(["run_id", "epoch"], key=lambda c: c.map(position) if c.name == "run_id" else c)
    return wide.reset_index(drop=True)


def _metric_name(split: str, task: str, metric: str) -> str:
    return f"{split}.{task}.{metric}" if task else f"{split}.{metric}"
