"""Send a stored study to experiment trackers (``mtlab export --format mlflow``, and after ``mtlab run --track``):
the runs the live view missed, then each variant's Δm, rank and the report, from the study's statistics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mtlab.errors import MtlabError
from mtlab.report.tables import comparison_frame, load_study, ranking_frame, store_path, summary_frame
from mtlab.study.store import ResultStore
from mtlab.study.tracking import Sent, Tracking, create_trackers, experiment_name


def variant_values(directory: Path) -> dict[str, dict[str, float]]:
    """Each variant's Δm (with its interval and seeds) and rank from the study's statistics (empty where the
    study has too few finished runs for them)."""
    try:
        study = load_study(directory)
        summary = summary_frame(study)
        ranking = ranking_frame(study, summary, comparison_frame(study))
    except (MtlabError, ValueError, KeyError):  # nothing finished yet, or no control to compare with
        return {}
    values: dict[str, dict[str, float]] = {}
    for row in summary.to_dict("records"):
        values[row["variant"]] = {k: float(row[k]) for k in ("delta_m", "delta_m.ci_low", "delta_m.ci_high",
                                                             "delta_m.n")}  # fmt: skip
    for row in ranking.to_dict("records"):  # a control left out of the ranks has NaN for both (not logged)
        values.setdefault(row["variant"], {}).update(rank=float(row["rank"]), mean_rank=float(row["mean_rank"]))
    return values


def export_study(directory: Path, names: Sequence[str], to: str | None = None) -> dict[str, str]:
    """Send the study at ``directory`` (finished or partial) to the trackers ``names``; idempotent. Returns each
    tracker's destination (a failing tracker is one :class:`~mtlab.trackers.TrackerWarning` and is left out)."""
    return {name: sent.destination for name, sent in send_study(directory, names, to).items()}


def send_study(directory: Path, names: Sequence[str], to: str | None = None) -> dict[str, Sent]:
    """:func:`export_study`, saying per tracker what it sent (a tracker that failed is left out)."""
    directory = Path(directory)
    with ResultStore(store_path(directory)) as store:
        info = store.info()
        trackers = create_trackers(names, experiment_name(info), directory, to)
        tracking = Tracking(trackers, store, directory, "what it had not accepted stays to send next time")
        try:
            tracking.catch_up(variant_values(directory))
        finally:
            tracking.close()
        return {name: tracking.sent[name] for name in tracking.trackers}
