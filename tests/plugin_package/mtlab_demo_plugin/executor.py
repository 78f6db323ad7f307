"""Executor ``demo_serial``: mtlab's in-process executor, described under its own name."""

from __future__ import annotations

from mtlab.execute import EXECUTORS
from mtlab.execute.local import LocalExecutor


class SerialExecutor(LocalExecutor):
    def describe(self):
        return {**super().describe(), "executor": "demo_serial"}


@EXECUTORS.register("demo_serial")
def create(*, workers=1, address=None, run_threads=1, work=None, retries=1):
    return SerialExecutor(work=work)
