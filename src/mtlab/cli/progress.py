"""Progress of a study (its runs) and of a run (epochs, batches, latest metrics), with elapsed and remaining time.

On a terminal: live rich bars. Piped or redirected (a log, a CI job), bars would be drawn half and redrawn as
control characters; there progress is plain lines instead - one per finished run of a study, one per epoch of
``mtlab train`` - each with the elapsed time and an estimate of the remaining time (:func:`study_progress`,
:func:`fit_progress` choose).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from mtlab.execute import EXECUTORS, executor_is_parallel
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


def epoch_text(record: Mapping[str, float], tasks: Mapping[str, str]) -> str:
    """``val loss 0.512  item 85.12%  group 93.21%``: an epoch's loss and each task's metric, on validation when the
    run has a validation split, else on training."""
    split = "val" if "val.loss" in record else "train"
    parts = [f"{split} loss {record[f'{split}.loss']:.3f}"]
    parts += [metric_text(t, m, record[f"{split}.{t}.{m}"]) for t, m in tasks.items() if f"{split}.{t}.{m}" in record]
    return "  ".join(parts)


def clock(seconds: float) -> str:
    """``1:02:03`` (hours, minutes, seconds), as the bars show times."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"



def _parallel(description: dict) -> bool:
    """Whether the executor a study reports runs several tasks at once (its own answer; one it does not know: yes)."""
    kind, workers = description.get("executor"), int(description.get("workers", 1))
    return executor_is_parallel(kind, workers) if kind in EXECUTORS else workers > 1

class _OneLineText(ProgressColumn):
    """A text column rich may narrow on a narrow terminal; its text is then cut with an ellipsis, never wrapped.

    Why: rich narrows only the columns it may wrap, and when none may (every built-in column says no_wrap) it narrows
    all of them alike - times became `0:…` or vanished. With the description and the metrics narrowable, the bar,
    the counts and the times keep their widths."""

    def __init__(self, template: str):
        super().__init__(table_column=Column(no_wrap=False, overflow="ellipsis"))
        self.template = template

    def render(self, task: Task) -> Text:
        text = Text.from_markup(self.template.format(task=task))
        text.no_wrap, text.overflow = True, "ellipsis"
        return text


def _progress(console: Console | None) -> Progress:
    console = console or Console()
    narrow = console.width < 70  # keep the counts and the times, not the bar
    return Progress(
        _OneLineText("[bold]{task.description}"),
        *([] if narrow else [BarColumn(bar_width=10)]),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        _OneLineText("{task.fields[metrics]}"),
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
        self.progress.update(self._epochs, advance=1, metrics=epoch_text(record, self.tasks))


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
        if _parallel(description):
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
        self.progress.update(self._runs, advance=1, metrics=message)


class PlainFitProgress(FitObserver):
    """One line per epoch of a run, for a log: ``epoch 3/10  val loss 0.512  item 85.12%  elapsed 0:00:12, remaining
    ~0:00:28``. The remaining time assumes every epoch is run (early stopping may end the run sooner)."""

    def __init__(self, tasks: Mapping[str, str], stream: TextIO):
        self.tasks = dict(tasks)
        self.stream = stream
        self._epochs = 0
        self._start = 0.0

    def __enter__(self) -> PlainFitProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def on_fit_start(self, epochs: int, batches_per_epoch: int) -> None:
        self._epochs = epochs
        self._start = time.monotonic()

    def on_epoch_end(self, record: dict[str, float]) -> None:
        epoch = int(record["epoch"])
        elapsed = time.monotonic() - self._start
        remaining = elapsed / epoch * (self._epochs - epoch)
        print(
            f"epoch {epoch}/{self._epochs}  {epoch_text(record, self.tasks)}  elapsed {clock(elapsed)}, "
            f"remaining ~{clock(remaining)}",
            file=self.stream,
            flush=True,
        )


class PlainStudyProgress(StudyObserver):
    """One line per finished run of a study, for a log: ``run 3/24 done: two-head, lambda=0.3 s1  elapsed 0:01:12,
    remaining ~0:08:24`` (the runs still to train, at the mean time per run so far)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._todo = 0
        self._ended = 0
        self._start = 0.0

    def __enter__(self) -> PlainStudyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def on_executor(self, description: dict) -> None:
        workers = int(description.get("workers", 1))
        if _parallel(description):
            self._print(f"training on {description['executor']}: {workers} workers x {description.get('threads')} "
                        "thread(s)")  # fmt: skip

    def on_study_start(self, total: int, done: int, todo: int) -> None:
        self._todo = todo
        self._start = time.monotonic()
        self._print(f"study: {todo} runs to train" + (f" ({done} of {total} already done)" if done else ""))

    def on_run_end(self, run: RunSpec, status: str, reason: str | None) -> None:
        self._ended += 1
        elapsed = time.monotonic() - self._start
        remaining = elapsed / self._ended * (self._todo - self._ended)
        self._print(
            f"run {self._ended}/{self._todo} {status}: {run.variant} s{run.seed}"
            + (f" ({reason})" if reason else "")
            + f"  elapsed {clock(elapsed)}, remaining ~{clock(remaining)}"
        )


def fit_progress(tasks: Mapping[str, str], console: Console) -> RichFitProgress | PlainFitProgress:
    """Bars on a terminal, a line per epoch otherwise."""
    return RichFitProgress(tasks, console=console) if console.is_terminal else PlainFitProgress(tasks, console.file)


def study_progress(console: Console) -> RichStudyProgress | PlainStudyProgress:
    """Bars on a terminal, a line per finished run otherwise."""
    return RichStudyProgress(console=console) if console.is_terminal else PlainStudyProgress(console.file)
