"""What every config section and every plug-in's options build on, kept apart from :mod:`.schema` so that a plug-in
(a dataset, a model kind, a weighting method - mtlab's own or an outside package's) can declare its typed options
next to its code without importing the whole run schema, which is assembled from the registries below.

* :data:`DATASETS` - data options classes by ``data.dataset`` name (``mtlab.datasets`` entry points);
* :data:`TRUNK_TYPES` - trunk options classes by ``trunk.type`` (``mtlab.models`` entry points);
* :data:`MODEL_KINDS` - model options classes by ``model.kind`` (``mtlab.models`` entry points).

A plug-in registers its options class with :func:`register_dataset` / :func:`register_model_kind`; the options class
answers what the rest of mtlab asks about it (a dataset: its tasks and their types, how to load it; a kind: its
trunks, what it shares, how to build it), so no other layer checks a name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    model_serializer,
    model_validator,
)

from mtlab.errors import closest, did_you_mean
from mtlab.registry import Registry

if TYPE_CHECKING:
    from mtlab.config.schema import RunConfig, TrunkConfig
    from mtlab.data.dataset import Dataset
    from mtlab.data.sources import Source
    from mtlab.models.base import MultiTaskNet
    from mtlab.tasks import Task


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment.

    ``added_options`` names options a section gained after studies were stored: each is left out of the dump while it
    has its default, so the dumped configs - and the run ids hashed from them - of every earlier study stay the same.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
    added_options: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_added_options_at_their_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        dumped = handler(self)
        for name in self.added_options:
            if name in dumped and getattr(self, name) == type(self).model_fields[name].get_default(
                call_default_factory=True
            ):
                del dumped[name]
        return dumped


class FileRelative(Strict):
    """A section whose file paths are relative to the config file that holds them: validated with the context
    ``{"base": directory}`` (what :func:`mtlab.config.load.load_config` and study specs pass), it calls
    :meth:`resolve_paths` with that directory; without it relative paths stay relative to the working directory."""

    @model_validator(mode="after")
    def _relative_to_config(self, info: ValidationInfo) -> FileRelative:
        base = (info.context or {}).get("base") if info is not None else None
        if base is not None:
            self.resolve_paths(Path(base))
        return self

    def resolve_paths(self, base: Path) -> None:
        """Make the options' relative file paths relative to ``base`` (the config file's directory)."""


class KeyedError(ValueError):
    """A cross-field validation error that knows its own key path (see :func:`mtlab.config.load.format_error`)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def at(path: str, message: str) -> KeyedError:
    return KeyedError(path, message)


def unknown_task(task: str, tasks: list[str], listing: str) -> str:
    """``unknown task 'itme'; did you mean 'item'?``, or with ``listing`` (the tasks there are) when none is close."""
    return f"unknown task {task!r}; {did_you_mean(task, tasks, listing)}"


def unknown_task_key(key: str, tasks: list[str]) -> str:
    """For a key named by a task (``loss.weights.itme``): ``unknown task; did you mean loss.weights.item?``."""
    section, _, task = key.rpartition(".")
    match = closest(task, tasks)
    return f"unknown task; did you mean {section}.{match}?" if match else f"unknown task; the trained tasks are {tasks}"


# ----------------------------------------------------------------------------------------------------------- data


class Augment(Strict):
    """Batched augmentation applied to training batches only (never to validation or test)."""

    crop_padding: int = Field(0, ge=0, description="Random crop after zero-padding each side by this many pixels.")
    horizontal_flip: bool = Field(False, description="Flip each training image left-right with probability 1/2.")


class DataBase(FileRelative):
    """Options every dataset shares. A dataset's options class adds ``dataset: Literal[...]`` (its name or names),
    its own fields, and answers :meth:`task_types` and (for a plug-in) :meth:`load`."""

    offered_tasks: ClassVar[tuple[str, ...]] = ()
    """The tasks of a dataset whose tasks are fixed (all ``multiclass``); others override :meth:`task_types`."""
    gives_pairs: ClassVar[bool] = False
    """Whether each example is a pair of images, which only a model kind that ``reads_pairs`` can compare."""

    data_dir: Path | None = Field(None, description="Directory holding the dataset files (first place looked).")
    download: bool = Field(True, description="Download from the official source when the files are found nowhere.")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Fraction of the training split held out (stratified) for validation."
    )
    train_subset: int | None = Field(
        None, gt=0, description="Use only this many training examples (stratified, seeded) - for quick budgets."
    )
    test_subset: int | None = Field(None, gt=0, description="Evaluate on only this many test examples.")
    normalize: bool = Field(
        True, description="Standardise inputs per channel (images) or per feature with training-split statistics."
    )
    augment: Augment = Field(default_factory=Augment)

    @classmethod
    def example(cls, name: str, workdir: Path) -> dict[str, Any]:
        """An example ``data`` section for dataset ``name`` (the tests parametrised over the registry validate it,
        and load it when its :meth:`sources` are all embedded): a dataset that reads the user's files writes small
        ones into ``workdir``; one that needs downloaded files names them (the tests load those only where the
        files are found)."""
        return {"dataset": name}

    def input_shape(self) -> tuple[int, ...] | None:
        """The shape of one example, (C, H, W) for images or (D,) for feature vectors, as the options tell before
        any file is read; None where only the files tell (checks of the shape are then left to the run)."""
        return None

    def sources(self) -> tuple[Source, ...]:
        """The :class:`~mtlab.data.sources.Source` file sets the dataset reads (downloadable or embedded in the
        package); empty for files put in place by hand, the user's own files, or generated data."""
        return ()

    def task_types(self) -> dict[str, str]:
        """Task name -> task type name, in the dataset's order (known before any file is read)."""
        return {task: "multiclass" for task in self.offered_tasks}

    def task_names(self) -> list[str]:
        return list(self.task_types())

    def check_run(self, run: RunConfig) -> None:
        """Raise :class:`KeyedError` for a rule of this dataset that needs the whole run."""

    def load(self, seed: int) -> Dataset:
        """Read the dataset: its official splits as tensors (:func:`mtlab.data.catalog.load_dataset` calls this)."""
        raise NotImplementedError(f"dataset {getattr(self, 'dataset', '?')!r} has no loader")


# ---------------------------------------------------------------------------------------------------------- model


class ModelKind(FileRelative):
    """What every model kind's config answers about itself, so that no other layer checks ``kind``.

    * :meth:`check_run` - the cross-field rules that need the whole run (dataset, tasks), raised as
      :class:`KeyedError` with the key path;
    * :meth:`trunk_configs` - the trunk configs of the network's feature extractors (stacking, search, analysis);
    * :attr:`trunk_field` - the key of the trunk config a search varies (``model.<trunk_field>``);
    * :meth:`sharing_label` - how the kind shares, in a word or two, for tables;
    * :meth:`build` - the network (a plug-in overrides this; mtlab's kinds are built by :mod:`mtlab.models`).
    """

    trunk_field: ClassVar[str] = "trunk"
    reads_pairs: ClassVar[bool] = False
    """Whether it reads examples that are image pairs (a dataset that gives pairs needs one)."""

    def check_run(self, run: RunConfig) -> None:
        """Raise :class:`KeyedError` if this model cannot be trained on ``run``'s data and tasks."""

    def trunk_configs(self) -> list[TrunkConfig]:
        return [getattr(self, self.trunk_field)]

    def dense_only(self) -> bool:
        """Whether the network has no convolutions (its trunks are MLPs; heads, gates and stitches are dense)."""
        return all(trunk.type == "mlp" for trunk in self.trunk_configs())

    def sharing_label(self) -> str:
        return str(getattr(self, "kind", "model"))

    def stackable(self) -> bool:
        """Whether K seeds may be trained as one vmapped model (a kind that knows it cannot says so here; a built
        network can still refuse through ``MultiTaskNet.stack_problem``)."""
        return True

    def build(self, run: RunConfig, tasks: dict[str, Task], input_shape: tuple[int, ...]) -> MultiTaskNet:
        raise NotImplementedError(f"model kind {getattr(self, 'kind', '?')!r} has no builder")


def dense_tasks(run: RunConfig) -> list[str]:
    """The trained tasks of ``run`` whose type predicts a map per example (segmentation, depth, normals)."""
    from mtlab.tasks import TASK_TYPES

    return [t for t, type_name in run.task_type_names().items() if TASK_TYPES.get(type_name).dense]


class DenseModelKind(ModelKind):
    """A kind whose every head predicts a map (B, outputs, H, W) at the input's size: it trains dense tasks only."""

    def check_run(self, run: RunConfig) -> None:
        per_pixel = dense_tasks(run)
        flat = [t for t in run.task_names if t not in per_pixel]
        if flat:
            raise at(
                "model.kind",
                f"{self.sharing_label()} predicts a map per pixel, but tasks {flat} are not per-pixel tasks "
                "(segmentation, depth, normals); use a multitask model for them",
            )

    def dense_only(self) -> bool:
        return False  # a conv net


# ------------------------------------------------------------------------------------------------------ registries

DATASETS: Registry[type[DataBase]] = Registry("dataset", entry_point_group="mtlab.datasets")
TRUNK_TYPES: Registry[type[Strict]] = Registry("trunk type", entry_point_group="mtlab.models")
"""Trunk options classes by ``trunk.type`` (an outside trunk registers with the ``mtlab.models`` entry points)."""
MODEL_KINDS: Registry[type[ModelKind]] = Registry("model kind", entry_point_group="mtlab.models")


def _tag_values(cls: type[BaseModel], field: str) -> tuple[Any, ...]:
    if field not in cls.model_fields:
        raise TypeError(f"{cls.__name__} needs a field {field!r} typed Literal[...] (its registered names)")
    return get_args(cls.model_fields[field].annotation)


def register_dataset(cls: type[DataBase]) -> type[DataBase]:
    """Class decorator: register a dataset's options class under every name its ``dataset`` literal allows."""
    for name in _tag_values(cls, "dataset"):
        DATASETS.register(name)(cls)
    return cls


def register_trunk_type(cls: type[Strict]) -> type[Strict]:
    """Class decorator: register a trunk's options class under its ``type`` literal (its builder registers with
    :func:`mtlab.models.registry.register_trunk` under the same name)."""
    for name in _tag_values(cls, "type"):
        TRUNK_TYPES.register(name)(cls)
    return cls


def register_model_kind(cls: type[ModelKind]) -> type[ModelKind]:
    """Class decorator: register a model kind's options class under its ``kind`` literal."""
    for name in _tag_values(cls, "kind"):
        MODEL_KINDS.register(name)(cls)
    return cls
