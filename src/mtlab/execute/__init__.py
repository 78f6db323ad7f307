"""Where work runs - a study's seed groups and a search's trials: in the driver's process, in a pool of worker
processes, or on a Ray cluster. The one executor service of mtlab: studies and searches both use it.

Every executor has the same small interface (:class:`Executor`): ``submit`` a task (a :class:`~.work.GroupTask` by
default), ``wait`` for the next finished result (a :class:`~.work.GroupResult`; progress :class:`~.work.Event` s
reach the ``on_event`` callback meanwhile), ``close``. What a worker does with a task is ``work(task, emit)``,
given at creation (a search's trial batches: :mod:`mtlab.search.workers`); a task whose worker died comes back as
``task.failed(reason)``. The driver submits at most ``slots`` tasks at a time and stays the only writer of the store
and the run directories, so resume, the lock and failure records behave the same with every executor.

- ``local`` (:mod:`.local`): in process, one group at a time - ``--workers 1``.
- ``processes`` (:mod:`.processes`): N worker processes on this machine, one intra-op thread each on a CPU, one per
  GPU on CUDA - ``--workers N``. A worker that dies fails only its runs, after one retry.
- ``ray`` (:mod:`.ray_tasks`): each group is a Ray task with declared ``num_cpus`` / ``num_gpus`` -
  ``--executor ray [--address auto|HOST:PORT]`` (``pip install 'mtlab[ray]'``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from mtlab.errors import ConfigError
from mtlab.execute.work import Event, GroupResult, GroupTask
from mtlab.registry import Registry

EventHandler = Callable[[Event], None]


class Executor(Protocol):
    """Runs :class:`GroupTask` s; results come back in the order they finish."""

    slots: int  # tasks it trains at once; the driver keeps at most this many submitted
    threads: int | None  # intra-op threads per task (None: torch's default)
    device: str | None  # the device kind tasks train on, where it differs from what configs resolve to here

    def submit(self, task: GroupTask) -> None: ...

    def wait(self, on_event: EventHandler) -> GroupResult:
        """Block until a submitted task finishes, passing progress events to ``on_event`` meanwhile."""
        ...

    def describe(self) -> dict[str, Any]:
        """What ran the study (kind, workers, threads per worker, cluster), for the store and the report."""
        ...

    def close(self) -> None: ...


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_workers(run_threads: int = 1) -> int:
    """``--workers auto``: one worker per GPU on CUDA, else one per ``run_threads`` usable CPU cores."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, usable_cores() // run_threads)


ExecutorFactory = Callable[..., "Executor"]
"""``factory(workers=N|"auto", address=str|None, run_threads=int, work=callable|None, retries=int) -> Executor``:
``work(task, emit)`` is what a worker does with a task (None: train a seed group), ``retries`` how often a task
whose worker died is run again."""

EXECUTORS: Registry[ExecutorFactory] = Registry("executor", entry_point_group="mtlab.executors")
"""Executors by ``--executor`` name; an outside package adds one through the ``mtlab.executors`` entry points."""


def _never(workers: int | str) -> bool:
    return False


def register_executor(
    name: str,
    *,
    parallel: Callable[[int | str], bool] = _never,
    takes_address: bool = False,
    shared_storage: Callable[[int | str], bool] = _never,
    example: dict[str, Any] | None = None,
) -> Callable[[ExecutorFactory], ExecutorFactory]:
    """Decorator: register an executor factory as ``name``, with what it answers about itself:

    * ``parallel(workers)`` - whether it runs several tasks at once (or elsewhere), which progress output shows;
    * ``takes_address`` - whether ``--address`` names what it joins (a cluster);
    * ``shared_storage(workers)`` - whether its tasks run outside the driver's process, so that what they share
      with it (a search's Optuna storage) must be storage several processes can write;
    * ``example`` - keyword options with which it runs on any machine (None: it needs something not always there,
      such as Ray); the tests parametrised over ``EXECUTORS`` create it with them.

    Args:
        name: What ``--executor NAME`` selects.
        parallel: See above.
        takes_address: See above.
        shared_storage: See above.
        example: See above.

    Returns:
        The decorator; it returns the factory unchanged.

    Raises:
        ValueError: An executor of that name is already registered.

    Example:
        See ``tests/plugin_package/mtlab_demo_plugin/executor.py`` and [Extending mtlab](../extending.md): an
        outside package registers from the module its ``mtlab.executors`` entry point names.
    """

    def add(factory: ExecutorFactory) -> ExecutorFactory:
        factory.parallel = parallel  # type: ignore[attr-defined]
        factory.takes_address = takes_address  # type: ignore[attr-defined]
        factory.shared_storage = shared_storage  # type: ignore[attr-defined]
        factory.example = example  # type: ignore[attr-defined]
        return EXECUTORS.register(name)(factory)

    return add


def executor_is_parallel(kind: str, workers: int | str) -> bool:
    return getattr(EXECUTORS.get(kind), "parallel", _never)(workers)


def executor_takes_address(kind: str) -> bool:
    return bool(getattr(EXECUTORS.get(kind), "takes_address", False))


def executor_needs_shared_storage(kind: str, workers: int | str) -> bool:
    """Whether tasks of executor ``kind`` run outside this process (a plug-in that does not say: they may)."""
    return getattr(EXECUTORS.get(kind), "shared_storage", lambda workers: True)(workers)


def _several(workers: int | str) -> bool:
    return workers != 1


def _always(workers: int | str) -> bool:
    return True


@register_executor("local", parallel=_several, shared_storage=_several, example={"workers": 1})
def _local(
    *, workers: int | str = 1, address: str | None = None, run_threads: int = 1, work=None, retries: int = 1
) -> Executor:
    """This machine: in process for one worker, else a pool of worker processes."""
    if address is not None:
        raise ConfigError(f"--address: only with --executor {' or '.join(_address_takers())}")
    count = auto_workers(run_threads) if workers == "auto" else int(workers)
    if count <= 0:
        raise ConfigError(f"--workers: must be positive or auto, got {workers}")
    if count == 1:
        from mtlab.execute.local import LocalExecutor

        return LocalExecutor(work=work)
    from mtlab.execute.processes import ProcessExecutor
    from mtlab.execute.work import run_group

    return ProcessExecutor(count, threads=run_threads, work=work or run_group, retries=retries)


@register_executor("ray", parallel=_always, takes_address=True, shared_storage=_always)
def _ray(
    *, workers: int | str = 1, address: str | None = None, run_threads: int = 1, work=None, retries: int = 1
) -> Executor:
    """A Ray cluster (``pip install 'mtlab[ray]'``): each task a Ray task."""
    from mtlab.execute.ray_tasks import RayExecutor
    from mtlab.execute.work import run_group

    slots = None if workers == "auto" else int(workers)
    return RayExecutor(address=address, threads=run_threads, max_slots=slots, work=work or run_group, retries=retries)


def _address_takers() -> list[str]:
    return [name for name in EXECUTORS.names() if executor_takes_address(name)]


def create_executor(
    kind: str = "local",
    *,
    workers: int | str = 1,
    address: str | None = None,
    run_threads: int = 1,
    work: Callable | None = None,
    retries: int = 1,
) -> Executor:
    """The executor ``kind`` (``local``, ``ray`` or a plug-in's); ``workers`` (a count or ``auto``) sizes a pool.

    ``run_threads``: the intra-op threads each run asks for (``train.threads``; 1 if unset): ``auto`` starts one
    worker per that many cores, so the workers never ask for more threads than the machine has. ``work`` and
    ``retries``: what workers do with a task and how often a task whose worker died is tried again - a study's seed
    groups by default; a search gives its trial batches (:mod:`mtlab.search.workers`), never retried.
    """
    if kind not in EXECUTORS:
        raise ConfigError(f"executor: must be one of {EXECUTORS.names()}, not {kind!r}")
    return EXECUTORS.get(kind)(workers=workers, address=address, run_threads=run_threads, work=work, retries=retries)
