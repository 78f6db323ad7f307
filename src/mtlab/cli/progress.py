"""Live progress on the terminal (rich): runs of a study, epochs and batches of a run, latest metrics, ETAs."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mtlab.study.runner import StudyObserver
from mtlab.study.spec import RunSpec
from mtlab.train.fit import FitObserver


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
    """Two bars for one run: its epochs (showing the latest metrics) and the batches of the current epoch."""

    def __init__(
        self, tasks: list[str], console: Console | None = None, label: str = "epochs", progress: Progress | None = None
    ):
        self.tasks = tasks
        self.label = label
        self.owns_display = progress is None
        self.progress = progress or _progress(console)
        self._epochs = None
        self._batches = None

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

    def on_fit_start(self, epochs: int, batches_per_epoch: int) -> None:
        if self.owns_display:
            self.progress.start()
        self._epochs = self.progress.add_task(self.label, total=epochs, metrics="")
        self._batches = self.progress.add_task("  batches", total=batches_per_epoch, metrics="")

    def on_batch_end(self, epoch: int, batch: int) -> None:
        if batch == 1:
            self.progress.reset(self._batches, metrics=f"epoch {epoch}")
        self.progress.advance(self._batches)

    def on_epoch_end(self, record: dict[str, float]) -> None:
        split = "val" if "val.loss" in record else "train"
        parts = [f"{split} loss {record[f'{split}.loss']:.3f}"]
        parts += [f"{t} {100 * record[f'{split}.{t}.acc']:.1f}%" for t in self.tasks]
        self.progress.update(self._epochs, advance=1, metrics="  ".join(parts))


class RichStudyProgress(StudyObserver):
    """A bar over the study's runs (done / total, ETA) above the bars of the run in progress."""

    def __init__(self, console: Console | None = None):
        self.progress = _progress(console)
        self._runs = None
        self._current: RichFitProgress | None = None

    def __enter__(self) -> RichStudyProgress:
        return self  # the display starts with the study: one that stops in its checks prints nothing

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def on_study_start(self, total: int, done: int, todo: int) -> None:
        self.progress.start()
        note = f"{done} already done" if done else ""
        self._runs = self.progress.add_task("study runs", total=todo, metrics=note)

    def run_observer(self, run: RunSpec) -> FitObserver:
        self._current = RichFitProgress(
            run.config.task_names, progress=self.progress, label=f"  {run.variant} s{run.seed}"
        )
        return self._current

    def group_observers(self, runs: list[RunSpec]) -> list[FitObserver | None]:
        # Seeds trained together advance together: one set of bars for the group.
        seeds = f"s{runs[0].seed}" if len(runs) == 1 else f"{len(runs)} seeds"
        self._current = RichFitProgress(
            runs[0].config.task_names, progress=self.progress, label=f"  {runs[0].variant} ({seeds})"
        )
        return [self._current] + [None] * (len(runs) - 1)

    def on_run_end(self, run: RunSpec, status: str, reason: str | None) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        message = f"last: {run.variant} s{run.seed} {status}" + (f" ({reason})" if reason else "")
        self.progress.update(self._runs, advance=1, metrics=message[:80])
