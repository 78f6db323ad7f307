"""Executor ``demo_serial``: mtlab's in-process executor, described under its own name."""

from __future__ import annotations

from mtlab.execute import register_executor
from mtlab.execute.local import LocalExecutor


class SerialExecutor(LocalExecutor):
    def describe(self):
        return {**super().describe(), "executor": "demo_serial"}


@register_executor("demo_serial", example={"workers": 1})  # in process: not parallel, no shared storage
def create(*, workers=1, address=None, run_threads=1, work=None, retries=1):
    return SerialExecutor(work=work)
