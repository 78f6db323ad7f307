"""A pool of worker processes on this machine (``--workers N``): one intra-op thread each on a CPU, one GPU each
on CUDA. A worker runs ``work(task, emit)`` for each task it is given (a study's seed groups by default; a search's
trial batches - any picklable task with a ``key`` and a ``failed(reason)`` result).

Each worker has its own pipe, so the driver always knows which task a worker holds: when a worker process dies
(killed, out of memory) its task is given once more to a fresh worker (infrastructure failures are often
transient), and if that worker dies too, only the task's runs fail, with the reason; the other workers go on.
Workers are started with ``spawn`` (a fork of a driver that has started torch's thread pool can deadlock), and
ignore Ctrl-C: the driver handles it and stops them. A worker dies with its driver, even one killed by SIGKILL
(which runs no clean-up): on Linux the kernel sends it SIGKILL when the driver ends (``prctl(PR_SET_PDEATHSIG)``,
strictly: when the driver thread that started it ends - the executor is used from one thread), and everywhere a
thread of the worker ends it once its parent is no longer the driver. Nobody would record what an orphan trains.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from mtlab.execute.work import GroupResult, GroupTask, run_group

RETRIES = 1  # a task whose worker dies is run once more before its runs fail
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_SECONDS = 0.2


def die_with_parent(parent: int) -> None:
    """End this process as soon as ``parent`` (the pid of the process that started it) has ended, however it ended.

    On Linux the kernel delivers SIGKILL to this process when its parent ends (``prctl(PR_SET_PDEATHSIG)``); a
    daemon thread also polls ``os.getppid()`` (an orphan is adopted by another process) on every platform, in case
    the call is refused. A parent that ended before this was set up is seen at once."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed: nothing will send it
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="mtlab-parent-watch").start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)  # no clean-up: the driver that would record the work is gone


def _worker_main(conn: Connection, threads: int | None, gpu: int | None, work: Callable, parent: int) -> None:
    """A worker's life: receive a task, train it while sending events, send the result; ``None`` means stop."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the driver decides
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    if gpu is not None:
        torch.cuda.set_device(gpu)  # "cuda" in this process now means this GPU
    def emit(event) -> None:
        try:
            conn.send(("event", event))
        except OSError:  # the driver is gone (killed): stop training, nobody would record it
            raise SystemExit(0) from None

    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if task is None:
            return
        result = work(task, emit)
        try:
            conn.send(("done", result))
        except OSError:
            return


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    gpu: int | None
    task: GroupTask | None = None


def exit_reason(exitcode: int | None) -> str:
    """Why a worker process ended, in words (a negative exit code is the signal that killed it)."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory, or killed)" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with code {exitcode}"


class ProcessExecutor:
    """``workers`` spawned processes; ``threads`` intra-op threads each (default 1 on a CPU: N single-threaded runs
    side by side beat one run on N threads for the small nets of a study; ``benchmarks/README.md``)."""

    def __init__(self, workers: int, *, threads: int | None = 1, retries: int = RETRIES, work: Callable = run_group):
        import torch

        self.context = multiprocessing.get_context("spawn")
        self.gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        self.threads = threads
        self.device = None  # workers resolve configs on this machine, as the driver would
        self.retries = retries
        self.work = work
        self.queue: deque[GroupTask] = deque()
        self.deaths: dict[int, int] = {}
        self.workers = [self._start(i % self.gpus if self.gpus else None) for i in range(workers)]
        self.slots = workers

    def _start(self, gpu: int | None) -> _Worker:
        ours, theirs = self.context.Pipe()
        args = (theirs, self.threads, gpu, self.work, os.getpid())
        process = self.context.Process(target=_worker_main, args=args, daemon=True, name="mtlab-worker")
        process.start()
        theirs.close()
        return _Worker(process, ours, gpu)

    def submit(self, task: GroupTask) -> None:
        self.queue.append(task)
        self._dispatch()

    def _dispatch(self) -> None:
        for i, worker in enumerate(self.workers):
            if worker.task is None and self.queue:
                if not worker.process.is_alive():  # died while idle: nothing of ours was lost
                    worker.conn.close()
                    worker = self.workers[i] = self._start(worker.gpu)
                worker.task = self.queue.popleft()
                with contextlib.suppress(OSError):  # died just now: wait() sees its sentinel and retries the task
                    worker.conn.send(worker.task)

    def wait(self, on_event) -> GroupResult:
        while True:
            self._dispatch()
            busy = [w for w in self.workers if w.task is not None]
            if not busy:
                raise RuntimeError("wait() with no task submitted")
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for worker in busy:
                if worker.conn in ready:
                    try:
                        kind, payload = worker.conn.recv()
                    except (EOFError, OSError):
                        kind, payload = "died", None
                elif worker.process.sentinel in ready and not worker.conn.poll():
                    kind, payload = "died", None
                else:
                    continue
                if kind == "event":
                    on_event(payload)
                elif kind == "done":
                    worker.task = None
                    return payload
                else:
                    failed = self._replace(worker)
                    if failed is not None:
                        return failed

    def _replace(self, worker: _Worker) -> GroupResult | None:
        """Start a fresh worker in place of a dead one; retry its task, or fail it on a second death."""
        task = worker.task
        worker.process.join(timeout=5)
        reason = exit_reason(worker.process.exitcode)
        worker.conn.close()
        self.workers[self.workers.index(worker)] = self._start(worker.gpu)
        self.deaths[task.key] = self.deaths.get(task.key, 0) + 1
        if self.deaths[task.key] <= self.retries:
            self.queue.appendleft(task)
            return None
        attempts = self.deaths[task.key]
        return task.failed(f"WorkerDied: the worker process {reason}, {attempts} attempt(s)")

    def describe(self) -> dict[str, Any]:
        import torch

        threads = self.threads or torch.get_num_threads()
        return {"executor": "processes", "workers": len(self.workers), "threads": threads, "gpus": self.gpus}

    def close(self) -> None:
        self.queue.clear()
        for worker in self.workers:
            try:
                if worker.task is None:
                    worker.conn.send(None)
                else:
                    worker.process.terminate()  # its runs stay 'running' in the store: a resume redoes them
            except OSError:
                pass
        for worker in self.workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
