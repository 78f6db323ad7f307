"""Live progress for training on the terminal (rich): epochs, batches, the latest metrics and an ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mtlab.train.fit import FitObserver


class RichFitProgress(FitObserver):
    """Two bars: epochs of the run, and batches of the current epoch; the epoch bar shows the latest metrics."""

    def __init__(self, tasks: list[str], console: Console | None = None, label: str = "train"):
        self.tasks = tasks
        self.label = label
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=console,
            transient=False,
        )
        self._epochs = None
        self._batches = None

    def __enter__(self) -> RichFitProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_fit_start(self, epochs: int, batches_per_epoch: int) -> None:
        self._epochs = self.progress.add_task(f"{self.label} epochs", total=epochs, metrics="")
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
