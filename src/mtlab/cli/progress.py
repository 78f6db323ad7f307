"""Live progress on the terminal (rich): runs of a study, epochs and batches of a run, latest metrics, ETAs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mtlab.report.units import format_value
from mtlab.study.runner import StudyObserver
from mtlab.study.spec import RunSpec
from mtlab.train.fit import FitObserver

if TYPE_CHECKING:
    from mtlab.config.schema import RunConfig


def primary_metrics(config: RunConfig) -> dict[str, str]:
    """Each trained task of ``config`` -> its type's primary metric (``acc`` for classification, ``mae`` for
    regression): what a progress line or a summary table shows first."""
    from mtlab.tasks import TASK_TYPES

    return {task: TASK_TYPES.get(kind).primary for task, kind in config.task_type_names().items()}


def metric_text(task: str, metric: str, value: float) -> str:
    """``item 85.12%`` (accuracy goes unnamed, as it always has), ``age mae 3.214``, ``tag f1 71.20%``."""
    name = "" if metric == "acc" else f" {metric}"
    return f"{task}{name} {format_value(metric, value, with_unit=True)}"


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
        console=console,
    )


class RichFitProgress(FitObserver):
    """Bars for one run: its epochs (showing the latest loss and each task's primary metric) and, unless
    ``batches=False``, the batches of the current epoch.

    ``tasks``: task -> the metric to show (:func:`primary_metrics`), or task names alone (accuracy is shown)."""

    def __init__(
        self,
        tasks: Mapping[str, str] | Sequence[str],
        console: Console | None = None,
        label: str = "epochs",
        progress: Progress | None = None,
        batches: bool = True,
    ):
        self.tasks = dict(tasks) if isinstance(tasks, Mapping) else {t: "acc" for t in tasks}
        self.label = label
        self.show_batches = batches
        self.owns_display = progress is None
        self.progress = progress or _progress(console)
        self._epochs = None
        self._batches = None
        self._epoch = 0

    def __enter__(self) -> RichFitProgress:
        return self  # the display starts with the first bar: a run that stops before training prints nothing

    def __exit__(self, *exc: object) -> None:
        if self.owns_display and self.progress.live.is_started:
            self.progress.stop()

    def close(self) -> None:
        """Remove this run's bars (when a study moves on to the next run)."""
        for bar in (self._epochs, self._batches):
            if bar is not None:
                self.progress.remove_task(bar)
        self._epochs = self._batches = None

    def on_fit_start(self, epochs: int, batches_per_epoch: int) -> None:
        if self.owns_display:
            self.progress.start()
        self._epochs = self.progress.add_task(self.label, total=epochs, metrics="")
        if self.show_batches:
            self._batches = self.progress.add_task("  batches", total=batches_per_epoch, metrics="")

    def on_batch_end(self, epoch: int, batch: int) -> None:
        # Absolute positions: a worker sends batch events at a few per second, not one per step.
        if self._batches is None:
            return
        if epoch != self._epoch:
            self._epoch = epoch
            self.progress.reset(self._batches, metrics=f"epoch {epoch}")
        self.progress.update(self._batches, completed=batch)

    def on_epoch_end(self, record: dict[str, float]) -> None:
        if self._epochs is None:
            return
        split = "val" if "val.loss" in record else "train"
        parts = [f"{split} loss {record[f'{split}.loss']:.3f}"]
        parts += [
            metric_text(t, m, record[f"{split}.{t}.{m}"]) for t, m in self.tasks.items() if f"{split}.{t}.{m}" in record
        ]
        self.progress.update(self._epochs, advance=1, metrics="  ".join(parts))


class RichStudyProgress(StudyObserver):
    """A bar over the study's runs (done / total, ETA) above the bars of each group in progress: epochs and batches
    with one worker, one line (epochs and latest metrics) per active worker with several."""

    def __init__(self, console: Console | None = None):
        self.progress = _progress(console)
        self._runs = None
        self._workers = 1
        self._bars: dict[str, RichFitProgress] = {}  # run id -> the bars of its group
        self._left: dict[int, int] = {}  # id(bars) -> runs of the group not ended yet

    def __enter__(self) -> RichStudyProgress:
        return self  # the display starts with the study: one that stops in its checks prints nothing

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def on_executor(self, description: dict) -> None:
        self._workers = int(description.get("workers", 1))
        if self._workers > 1 or description.get("executor") == "ray":
            where = f"{description['executor']}: {self._workers} workers x {description.get('threads')} thread(s)"
            self.progress.console.print(f"training on {where}")

    def on_study_start(self, total: int, done: int, todo: int) -> None:
        self.progress.start()
        note = f"{done} already done" if done else ""
        self._runs = self.progress.add_task("study runs", total=todo, metrics=note)

    def run_observer(self, run: RunSpec) -> FitObserver:
        return self.group_observers([run])[0]

    def group_observers(self, runs: list[RunSpec]) -> list[FitObserver | None]:
        # Seeds trained together advance together: one set of bars for the group.
        seeds = f"s{runs[0].seed}" if len(runs) == 1 else f"{len(runs)} seeds"
        bars = RichFitProgress(
            primary_metrics(runs[0].config),
            progress=self.progress,
            label=f"  {runs[0].variant} ({seeds})",
            batches=self._workers == 1,
        )
        for run in runs:
            self._bars[run.run_id] = bars
        self._left[id(bars)] = len(runs)
        return [bars] + [None] * (len(runs) - 1)

    def on_run_end(self, run: RunSpec, status: str, reason: str | None) -> None:
        bars = self._bars.pop(run.run_id, None)
        if bars is not None:
            self._left[id(bars)] -= 1
            if self._left[id(bars)] == 0:
                del self._left[id(bars)]
                bars.close()
        message = f"last: {run.variant} s{run.seed} {status}" + (f" ({reason})" if reason else "")
        self.progress.update(self._runs, advance=1, metrics=message[:80])
