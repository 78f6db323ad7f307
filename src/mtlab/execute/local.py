"""The in-process executor: the driver trains each group itself, one at a time (``--workers 1``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from mtlab.execute.work import GroupResult, GroupTask, run_group


class LocalExecutor:
    """Trains in the driver's process with torch's own thread count; ``wait`` runs the next submitted task.

    ``train`` replaces :func:`~mtlab.train.run.train_runs` (tests inject faults with it)."""

    slots = 1
    threads = None
    device = None

    def __init__(self, train: Callable[..., list] | None = None, work: Callable | None = None) -> None:
        self.queue: deque[GroupTask] = deque()
        self.train = train
        self.work = work  # ``work(task, emit)``; default: train a seed group (run_group)

    def submit(self, task: GroupTask) -> None:
        self.queue.append(task)

    def wait(self, on_event) -> GroupResult:
        if self.work is not None:
            return self.work(self.queue.popleft(), on_event)
        return run_group(self.queue.popleft(), on_event, self.train)

    def describe(self) -> dict[str, Any]:
        import torch

        return {"executor": "local", "workers": 1, "threads": torch.get_num_threads()}

    def close(self) -> None:
        self.queue.clear()

