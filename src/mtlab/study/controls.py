"""Which variant each variant is compared with, per task (from a spec's ``control``; see :class:`Control`)."""

from __future__ import annotations

from mtlab.errors import ConfigError
from mtlab.study.spec import RunSpec, StudySpec


def resolve_controls(spec: StudySpec, runs: list[RunSpec]) -> dict[str, dict[str, str]]:
    """``{variant: {task: control variant}}`` for every variant that has a control for some task it trains.

    A variant is not compared with itself, and a task is only compared where the control trains it too.
    """
    control = spec.control
    if control is None:
        return {}
    tasks = {r.variant: r.config.task_names for r in runs}
    labels = {r.variant: r.labels for r in runs}
    by_labels = {tuple(sorted(ls.items())): v for v, ls in labels.items()}
    result: dict[str, dict[str, str]] = {}
    for variant, variant_tasks in tasks.items():
        chosen: dict[str, str] = {}
        for task in variant_tasks:
            if isinstance(control.variant, list):  # the first of them these runs have
                target = next((v for v in control.variant if v in tasks), control.variant[0])
            elif control.variant is not None:
                target = control.variant
            elif control.per_task is not None:
                target = control.per_task.get(task)
            else:
                wanted = {**labels[variant], **control.match}
                target = by_labels.get(tuple(sorted(wanted.items())))
            if target is None:
                continue
            if target not in tasks:
                raise ConfigError(f"study {spec.name}: control {target!r} is not a variant; variants: {list(tasks)}")
            if target != variant and task in tasks[target]:
                chosen[task] = target
        if chosen:
            result[variant] = chosen
    return result
