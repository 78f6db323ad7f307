"""What every config section and every plug-in's options build on, and the step that assembles the run schema.

The run config is assembled in two steps:

1. **Plug-ins declare.** A plug-in's options class (a dataset, a trunk, a model kind - mtlab's own or an outside
   package's) subclasses :class:`DataBase`, :class:`TrunkOptions` or :class:`ModelKind` in the plug-in's own module
   and registers with :func:`register_dataset`, :func:`register_trunk` or :func:`register_model_kind`. A field that
   holds *any* trunk (a kind's ``trunk``) is annotated with the shared union by forward reference (``Trunk``), as
   are the ``data`` and ``model`` sections of :class:`~mtlab.config.schema.RunConfig` (``DataConfig``,
   ``ModelConfig``): those classes are incomplete until step 2.
2. **Config assembles.** :func:`assemble` asks each registry for its plug-ins - which loads them: mtlab's own by
   module name (the registries' ``builtins``), then the installed packages' entry points - builds the tagged unions
   :func:`shared_unions` returns, and rebuilds every incomplete options class with them (pydantic
   ``model_rebuild``).

Why this shape: the config layer must not import the data and model layers (they import it), yet the unions it
validates with hold their classes. Naming mtlab's own plug-ins as module names in their registry - the same way an
entry point names an outside one - lets one mechanism load both, keeps every import pointing down, and leaves no
plug-in module imported from the middle of a config module. :func:`assemble` runs by itself on the first use of an
incomplete class (``RunConfig.model_validate``, a study spec, a kind's options): pydantic rebuilds an incomplete
model on first use through :meth:`Strict.model_rebuild`, which assembles first. The top layers (``mtlab`` command,
``train_run``) may call it up front; it runs once.

The options class answers what the rest of mtlab asks about it (a dataset: its tasks and their types, how to load
it; a trunk: its builder, whether it ends flat; a kind: its trunks, what it shares, how to build it), so no other
layer checks a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Union, get_args

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
    from collections.abc import Callable

    from torch import Tensor, nn

    from mtlab.config.schema import RunConfig
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

    @classmethod
    def model_rebuild(
        cls,
        *,
        force: bool = False,
        raise_errors: bool = True,
        _parent_namespace_depth: int = 2,
        _types_namespace: Any = None,
    ) -> bool | None:
        """Pydantic's rebuild of an incomplete class (one that refers to the shared unions), which it also calls on
        the class's first use: the schema is assembled first (:func:`assemble`), and the unions resolve the forward
        references."""
        if _types_namespace is None:
            assemble()
            if cls.__pydantic_complete__ and not force:
                return None
            _types_namespace = shared_unions()
        return super().model_rebuild(
            force=force,
            raise_errors=raise_errors,
            _parent_namespace_depth=_parent_namespace_depth,
            _types_namespace=_types_namespace,
        )


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

InputShape = tuple[int, ...]
"""Shape of one input example: (C, H, W) for images, (D,) for feature vectors."""


class TrunkOptions(FileRelative):
    """A trunk: a feature extractor mapping inputs (B, *input_shape) to features (B, F), made of named stages.

    A trunk's module subclasses this with ``type: Literal["<name>"]`` and its fields, registers it with
    :func:`register_trunk`, and answers:

    * :meth:`build` - the network for inputs of ``input_shape``, and its width F (a
      :class:`~mtlab.models.staged.StagedTrunk`, whose stages soft-sharing kinds are wired from);
    * :meth:`ends_flat` - whether its last stage outputs a feature vector (dense layers) rather than a feature map;
    * :meth:`reads_vectors` - whether it can be built for flat inputs (D,) (the output of a trunk that ends flat);
    * :meth:`dense_only` - whether it has no convolutions;
    * :meth:`layer_widths` - its layers' widths and a short label, as a search's result table shows it;
    * :meth:`example` - a small config of it, which the tests parametrised over :data:`TRUNKS` build.
    """

    def build(self, input_shape: InputShape) -> tuple[nn.Module, int]:
        raise NotImplementedError(f"trunk {getattr(self, 'type', '?')!r} has no builder")

    def ends_flat(self) -> bool:
        return False

    def reads_vectors(self) -> bool:
        return False

    def dense_only(self) -> bool:
        return False

    def layer_widths(self) -> tuple[list[int], str]:
        """The units or filters of its layers (MLP: hidden layers, CNN: convolutions), and a readable label
        (``512-256``, ``32k4-64k3``); a trunk without such a list: none, and its type."""
        return [], str(getattr(self, "type", "trunk"))

    @classmethod
    def example(cls) -> dict[str, Any]:
        """A small trunk section of this type that builds for 1- and 3-channel images of 9 to 32 pixels a side."""
        raise NotImplementedError(f"{cls.__name__} gives no example")


@dataclass(frozen=True)
class ModelExample:
    """A small ``model`` section of a kind and a problem it is built for: the tests parametrised over
    :data:`MODEL_KINDS` build it for ``tasks`` (every one trained) and inputs of ``input_shape``, and check it.
    ``inputs(k)`` gives k valid inputs (k, *input_shape) for a kind that reads structured examples (padded
    molecules); None: any tensor of that shape will do."""

    options: dict[str, Any]
    tasks: dict[str, Task]
    input_shape: InputShape
    inputs: Callable[[int], Tensor] | None = None


class ModelKind(FileRelative):
    """What every model kind's config answers about itself, so that no other layer checks ``kind``.

    * :meth:`build` - the network for ``tasks`` (the trained tasks, in order) and inputs of ``input_shape``;
    * :meth:`example` - a small config and a problem it is built for (:class:`ModelExample`);
    * :meth:`check_run` - the cross-field rules that need the whole run (dataset, tasks), raised as
      :class:`KeyedError` with the key path;
    * :meth:`trunk_configs` - the trunk configs of the network's feature extractors (stacking, search, analysis);
    * :attr:`trunk_field` - the key of the trunk config a search varies (``model.<trunk_field>``);
    * :attr:`reads_pairs` - whether it reads examples that are image pairs (a dataset that gives pairs needs one);
    * :meth:`sharing_label` - how the kind shares, in a word or two, for tables.
    """

    trunk_field: ClassVar[str] = "trunk"
    reads_pairs: ClassVar[bool] = False
    """Whether it reads examples that are image pairs (a dataset that gives pairs needs one)."""

    def check_run(self, run: RunConfig) -> None:
        """Raise :class:`KeyedError` if this model cannot be trained on ``run``'s data and tasks."""

    def trunk_configs(self) -> list[TrunkOptions]:
        return [getattr(self, self.trunk_field)]

    def dense_only(self) -> bool:
        """Whether the network has no convolutions (its trunks have none; heads, gates and stitches are dense)."""
        return all(trunk.dense_only() for trunk in self.trunk_configs())

    def sharing_label(self) -> str:
        return str(getattr(self, "kind", "model"))

    def stackable(self) -> bool:
        """Whether K seeds may be trained as one vmapped model (a kind that knows it cannot says so here; a built
        network can still refuse through ``MultiTaskNet.stack_problem``)."""
        return True

    def build(self, tasks: dict[str, Task], input_shape: InputShape) -> MultiTaskNet:
        """The network with one output per task of ``tasks`` (the trained ones, in order), for inputs of
        ``input_shape``. Parameters are initialised from torch's global generator."""
        raise NotImplementedError(f"model kind {getattr(self, 'kind', '?')!r} has no builder")

    @classmethod
    def example(cls) -> ModelExample:
        raise NotImplementedError(f"{cls.__name__} gives no example")


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

# mtlab's own plug-ins, by module name (see the module docstring: loaded on first use of the registry, then the
# entry points of its group).
DATASETS: Registry[type[DataBase]] = Registry(
    "dataset",
    entry_point_group="mtlab.datasets",
    builtins=("mtlab.data.builtin",),  # imports every dataset module of mtlab, in the order mtlab lists them
)
TRUNKS: Registry[type[TrunkOptions]] = Registry(
    "trunk",
    entry_point_group="mtlab.trunks",
    builtins=(
        "mtlab.models.trunks.mlp",
        "mtlab.models.trunks.cnn",
        "mtlab.models.trunks.resnet",
        "mtlab.models.timm_trunk",
        "mtlab.models.imagenet_resnet",
    ),
)
"""Trunk options classes by ``trunk.type``; an outside trunk registers through the ``mtlab.trunks`` entry points."""
MODEL_KINDS: Registry[type[ModelKind]] = Registry(
    "model kind",
    entry_point_group="mtlab.models",
    builtins=tuple(
        f"mtlab.models.{name}"
        for name in ("multitask", "cross_stitch", "mtan", "mmoe", "dselect_k", "ltb", "ple", "pairs", "custom",
                     "segnet", "deeplab", "multi_lenet", "mpnn")
    ),
)
"""Model options classes by ``model.kind``; an outside kind registers through the ``mtlab.models`` entry points."""


def _tag_values(cls: type[BaseModel], field: str) -> tuple[Any, ...]:
    if field not in cls.model_fields:
        raise TypeError(f"{cls.__name__} needs a field {field!r} typed Literal[...] (its registered names)")
    return get_args(cls.model_fields[field].annotation)


def _not_yet_assembled(cls: type[BaseModel], group: str) -> None:
    if _UNIONS:
        raise RuntimeError(
            f"{cls.__module__}.{cls.__name__} registers after the run config was assembled, so configs cannot select "
            f"it; declare its module as a {group} entry point (or import it before the first config is validated)"
        )


def register_dataset(cls: type[DataBase]) -> type[DataBase]:
    """Class decorator: register a dataset's options class under every name its ``dataset`` literal allows.

    Args:
        cls: The options class; its ``dataset`` field is a ``Literal`` of the names it registers.

    Returns:
        ``cls`` itself; ``data.dataset: NAME`` now selects it.

    Raises:
        ValueError: A name already registered.
        TypeError: ``cls`` has no ``dataset`` field.
        RuntimeError: The run config was already assembled (declare the module as an entry point instead).

    Example:
        See [Extending mtlab](../extending.md): an outside package registers from the module its entry point
        names.
    """
    _not_yet_assembled(cls, "mtlab.datasets")
    for name in _tag_values(cls, "dataset"):
        DATASETS.register(name)(cls)
    return cls


def register_trunk(cls: type[TrunkOptions]) -> type[TrunkOptions]:
    """Class decorator: register a trunk's options class under its ``type`` literal.

    Args:
        cls: The options class; its ``type`` field is a ``Literal`` of the names it registers.

    Returns:
        ``cls`` itself; ``model.trunk.type: NAME`` now selects it.

    Raises:
        ValueError: A name already registered.
        TypeError: ``cls`` has no ``type`` field.
        RuntimeError: The run config was already assembled (declare the module as an entry point instead).

    Example:
        See [Extending mtlab](../extending.md): an outside package registers from the module its entry point
        names.
    """
    _not_yet_assembled(cls, "mtlab.trunks")
    for name in _tag_values(cls, "type"):
        TRUNKS.register(name)(cls)
    return cls


def register_model_kind(cls: type[ModelKind]) -> type[ModelKind]:
    """Class decorator: register a model kind's options class under its ``kind`` literal.

    Args:
        cls: The options class; its ``kind`` field is a ``Literal`` of the names it registers.

    Returns:
        ``cls`` itself; ``model.kind: NAME`` now selects it.

    Raises:
        ValueError: A name already registered.
        TypeError: ``cls`` has no ``kind`` field.
        RuntimeError: The run config was already assembled (declare the module as an entry point instead).

    Example:
        See [Extending mtlab](../extending.md): an outside package registers from the module its entry point
        names.
    """
    _not_yet_assembled(cls, "mtlab.models")
    for name in _tag_values(cls, "kind"):
        MODEL_KINDS.register(name)(cls)
    return cls


# -------------------------------------------------------------------------------------------------------- assembly

_UNIONS: dict[str, Any] = {}
_assembling = False


def _union(registry: Registry, tag: str) -> Any:
    """The discriminated union of every options class in ``registry`` (mtlab's own, then entry-point plug-ins)."""
    members = tuple(dict.fromkeys(cls for _, cls in registry.items()))
    return Annotated[Union[members], Field(discriminator=tag)]  # noqa: UP007  (built at run time)


def assemble() -> None:
    """Step two (see the module docstring): load every plug-in, build the shared unions, rebuild the classes that
    refer to them. Runs once; later calls return at once."""
    global _assembling
    if _UNIONS or _assembling:
        return
    _assembling = True
    try:
        for registry in (TRUNKS, MODEL_KINDS, DATASETS):
            registry.names()  # loads every plug-in first: a trunk may come with an outside package's model kinds
        unions = {
            "Trunk": _union(TRUNKS, "type"),
            "DataConfig": _union(DATASETS, "dataset"),
            "ModelConfig": _union(MODEL_KINDS, "kind"),
        }
        for registry in (TRUNKS, MODEL_KINDS, DATASETS):
            for _, cls in registry.items():
                if not cls.__pydantic_complete__:
                    cls.model_rebuild(_types_namespace=unions)
        _UNIONS.update(unions)
    finally:
        _assembling = False


def shared_unions() -> dict[str, Any]:
    """``Trunk``, ``DataConfig`` and ``ModelConfig``: the tagged unions of every registered trunk, dataset and model
    kind, by the names plug-ins refer to them by forward reference (assembled on first call)."""
    assemble()
    return dict(_UNIONS)
