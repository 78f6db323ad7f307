"""Everything a study says, checked before its first run starts: a mistake should cost seconds, not a study.

:func:`~mtlab.study.spec.expand` has already validated every run config of the chosen budget. This adds what only
the whole set of runs can tell (the control names variants, axes and labels that exist, and gives at least one
comparison), where the results go (a directory, not a file), and what a run would only find out when it starts:
that its data can be found and read and its model can be built for that data.
"""

from __future__ import annotations

from pathlib import Path

from mtlab.errors import ConfigError, MtlabError, did_you_mean
from mtlab.study.controls import resolve_controls
from mtlab.study.spec import RunSpec, StudySpec


def validate_study(spec: StudySpec, runs: list[RunSpec], directory: Path, *, check_data: bool = True) -> None:
    """Raise a :class:`MtlabError` for the first thing that would stop ``spec``'s ``runs`` in ``directory``.

    ``check_data=False`` leaves the data and model checks to the runs (for executors whose workers, not the
    driver, hold the data).
    """
    check_directory(Path(directory))
    check_control(spec, runs)
    if check_data:
        check_data_and_models(runs)


STUDY_MARKS = ("results.sqlite", "study.yaml", ".lock")
"""What a study directory holds from its first moments on (the lock, then the store, then the spec as run)."""


def check_directory(directory: Path) -> None:
    """The study directory is a directory, or can be made one (its nearest existing ancestor is a directory), and
    its results store, if it has one, is readable (checked before the lock file is touched). An existing directory
    that is not a study's is refused: a run directory (``mtlab train --out``), or any other non-empty one."""
    from mtlab.study.store import ResultStore

    if directory.exists() and not directory.is_dir():
        raise MtlabError(f"{directory}: exists and is not a directory; choose another --out")
    store = directory / "results.sqlite"
    if store.is_file():
        ResultStore(store).close()  # a damaged file is a user error naming it and what to do
    elif directory.is_dir() and not any((directory / mark).exists() for mark in STUDY_MARKS):
        if (directory / "meta.json").is_file() or (directory / "config.yaml").is_file():
            raise MtlabError(
                f"{directory}: is a run directory (made by `mtlab train`), not a study directory; choose another --out"
            )
        if any(directory.iterdir()):
            raise MtlabError(
                f"{directory}: exists, is not empty and holds no study (no results.sqlite); choose another --out"
            )
    ancestor = directory
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise MtlabError(f"{ancestor}: is a file, so {directory} cannot be created there; choose another --out")


def check_control(spec: StudySpec, runs: list[RunSpec]) -> None:
    """The control names what the runs have, and compares some variant with another."""
    control = spec.control
    if control is None:
        return
    variants = list(dict.fromkeys(r.variant for r in runs))
    where = f"study {spec.name}: control"
    if isinstance(control.variant, list) and not any(v in variants for v in control.variant):
        raise ConfigError(f"{where}: none of {control.variant} is a variant of these runs; variants: {variants}")
    if isinstance(control.variant, str) and control.variant not in variants:
        known = did_you_mean(control.variant, variants, f"variants: {variants}")
        raise ConfigError(f"{where} {control.variant!r} is not a variant; {known}")
    if control.match is not None:
        for axis, label in control.match.items():
            labels = list(dict.fromkeys(r.labels[axis] for r in runs if axis in r.labels))
            if not labels:
                axes = list(dict.fromkeys(a for r in runs for a in r.labels))
                raise ConfigError(f"{where}.match: {axis!r} is not an axis of the study; axes: {axes}")
            if label not in labels:
                raise ConfigError(f"{where}.match.{axis}: {label!r} is not one of its labels {labels}")
    if control.per_task is not None:
        trained = list(dict.fromkeys(t for r in runs for t in r.config.task_names))
        for task, target in control.per_task.items():
            if task not in trained:
                raise ConfigError(f"{where}.per_task: {task!r} is not a task any run trains; tasks: {trained}")
            if target not in variants:
                raise ConfigError(f"{where}.per_task.{task}: {target!r} is not a variant; variants: {variants}")
    if len(variants) > 1 and not resolve_controls(spec, runs):
        raise ConfigError(f"{where} compares no variant with another (no variant shares a task with its control)")


def check_data_and_models(runs: list[RunSpec]) -> None:
    """Load each distinct dataset once and build each distinct model on it (parsed files are cached for the runs)."""
    from mtlab.data.catalog import load_dataset
    from mtlab.models import build_model

    datasets = {}
    built = set()
    for run in runs:
        data_key = run.config.data.model_dump_json()
        if data_key not in datasets:
            datasets[data_key] = load_dataset(run.config.data, seed=run.seed)
        model_key = run.config.model_dump_json(include={"data", "model", "tasks"})
        if model_key not in built:
            dataset = datasets[data_key]
            build_model(run.config, dataset.tasks, dataset.input_shape)
            built.add(model_key)
