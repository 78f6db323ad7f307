"""Seed groups as Ray tasks (Moritz et al., 2018, "Ray: A Distributed Framework for Emerging AI Applications").

``--executor ray`` starts a private Ray instance on this machine; ``--address auto`` joins the cluster this machine
belongs to (``ray start``), ``--address HOST:PORT`` the cluster whose head listens there. Each group is a task that
declares what it holds: one CPU per intra-op thread, and one GPU when the cluster has GPUs, so Ray packs as many
tasks on a node as it has room for. The driver keeps at most as many tasks in flight as the cluster has room for,
so the store's ``running`` runs are the ones actually training.

Faults: Ray reruns a task whose worker process or node died once (``max_retries=1``); if that fails too, its runs
fail with Ray's reason and the study goes on. Progress events travel through a :class:`ray.util.queue.Queue` actor.
Workers need mtlab installed and the data where they run (``MTLAB_DATA`` or the cache on each node); they write
nothing, results come back to the driver. A driver killed by SIGKILL leaves no Ray work behind by Ray's own rules,
not mtlab's: the private instance's processes are started by Ray to share the driver's fate (``PR_SET_PDEATHSIG`` on
Linux; its workers end with their raylet), and a cluster ends the tasks of a job whose driver has died.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from mtlab.errors import ConfigError, MtlabError
from mtlab.execute.work import GroupResult, GroupTask, run_group

RETRIES = 1


def run_task(work: Callable, task: Any, events: Any) -> Any:
    """The Ray task: ``work(task, emit)`` (a seed group's :func:`~mtlab.execute.work.run_group` unless
    told otherwise), with events sent to the driver's queue."""

    def emit(event) -> None:
        with contextlib.suppress(Exception):  # progress is best effort: never fail a run because the display is gone
            events.put_nowait(event)

    return work(task, emit)


class RayExecutor:
    def __init__(
        self,
        address: str | None = None,
        threads: int = 1,
        max_slots: int | None = None,
        *,
        work: Callable = run_group,
        retries: int = RETRIES,
    ):
        try:
            import ray
            from ray.util.queue import Queue
        except ImportError:
            raise MtlabError("--executor ray needs Ray: pip install 'mtlab[ray]'") from None
        self.ray = ray
        self.address = address
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            try:
                ray.init(address=address, include_dashboard=False, logging_level="warning", log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                message = " ".join(str(e).split())[:300]
                raise ConfigError(f"--address: cannot join a Ray cluster at {address!r}: {message}") from None
        resources = ray.cluster_resources()
        self.cpus = float(resources.get("CPU", 1))
        self.gpus = int(resources.get("GPU", 0))
        self.threads = threads
        self.device = "cuda" if self.gpus else "cpu"  # decides seed stacking (stacking_pays)
        self.slots = self.gpus if self.gpus else max(1, int(self.cpus // threads))
        if max_slots is not None:
            self.slots = min(self.slots, max_slots)  # --workers caps the tasks in flight
        self.events = Queue(actor_options={"num_cpus": 0})
        self.work = work
        self.retries = retries
        self.remote = ray.remote(run_task).options(
            num_cpus=threads, num_gpus=1 if self.gpus else 0, max_retries=retries, retry_exceptions=False
        )
        self.refs: dict[Any, GroupTask] = {}

    def submit(self, task: GroupTask) -> None:
        self.refs[self.remote.remote(self.work, task, self.events)] = task

    def _drain(self, on_event) -> None:
        try:
            pending = self.events.qsize()
            events = self.events.get_nowait_batch(pending) if pending else []
        except Exception:
            return
        for event in events:
            on_event(event)

    def wait(self, on_event) -> GroupResult:
        ray = self.ray
        if not self.refs:
            raise RuntimeError("wait() with no task submitted")
        while True:
            ready, _ = ray.wait(list(self.refs), num_returns=1, timeout=0.25)
            self._drain(on_event)
            if ready:
                task = self.refs.pop(ready[0])
                try:
                    return ray.get(ready[0])
                except ray.exceptions.RayError as e:  # worker or node died twice, out of memory, cancelled
                    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    return task.failed(f"{type(e).__name__}: {first} ({1 + self.retries} attempts)")

    def describe(self) -> dict[str, Any]:
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return {
            "executor": "ray",
            "address": self.address or "local",
            "nodes": len(nodes),
            "cpus": self.cpus,
            "gpus": self.gpus,
            "workers": self.slots,
            "threads": self.threads,
        }

    def close(self) -> None:
        for ref in self.refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.refs.clear()
        with contextlib.suppress(Exception):
            self.events.shutdown()
        if self.owns_ray:
            self.ray.shutdown()
