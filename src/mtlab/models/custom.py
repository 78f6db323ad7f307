"""The ``custom`` model kind: the user's own network, built by a factory function the config names.

.. code-block:: yaml

    model:
      kind: custom
      factory: "mypackage.nets:build"     # or "nets.py:build", relative to the config file
      options: {width: 64}                # keyword arguments of the factory

The factory is called as ``build(task_outputs, input_shape, **options)``: ``task_outputs`` maps each trained task to
the width of the output it needs (``{"item": 10, "group": 3}``), ``input_shape`` is the shape of one example
(``(C, H, W)`` or ``(D,)``). It returns an ``nn.Module`` mapping a batch ``(B, *input_shape)`` to
``{task: (B, width)}``. Its parameters are initialised from torch's global generator, which mtlab seeds before
building, as for every kind.

:class:`CustomNet` wraps the module. At build time one forward pass on a random batch (eval mode; the module's
modes, buffers and torch's global random state are restored afterwards) checks the output keys and widths and finds
which tasks' losses reach each parameter (autograd: each task's summed output is differentiated), unless the module
says which parameters are shared through a ``shared_parameters()`` method of its own (the others are still assigned
by autograd). A parameter that no task reaches would never train: it is an error, as is a frozen one
(``requires_grad=False``; a fixed tensor belongs in a buffer).
The user's code raising - the factory file when it is run, the factory, the network's probe forward - is the
user's error (:class:`~mtlab.errors.UserCodeError`): one line naming the factory, its options and the exception,
then the traceback frames in the user's own files, never mtlab's.

Parts (:meth:`CustomNet.parts`): the module tree is cut into the largest subtrees whose parameters all have the same
reaching tasks, each a :class:`~mtlab.models.base.Part` holding the real submodule (its ``name`` is its path, so
``model.get_submodule(part.name) is part.module``). Where a module's *own* parameters (``recurse=False``) sit beside
children with other reaching tasks, they form a part per task set whose module is a :class:`ParameterView`: an
``nn.Module`` that registers nothing and yields those parameters (names relative to the owner), so every parameter
lies in exactly one part and its name ``f"{part.name}.{relative name}"`` is its name in the network, which
:func:`~mtlab.train.replicas.parameter_views` relies on.

A custom net has no mtlab trunk: ``features()`` and ``staged_trunks()`` are empty (the analysis commands do not
apply) and there is no shared representation to split the forward at. Whether K seeds can be trained as one vmapped
model is tried on demand (:meth:`CustomNet.stack_problem`): data-dependent control flow or ``.item()`` cannot be
vmapped, and such a net trains its seeds one after another.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from mtlab.config.base import ModelExample, ModelKind, TrunkOptions, register_model_kind
from mtlab.errors import MtlabError, UserCodeError
from mtlab.models.base import FASHION_TASKS, MultiTaskNet, Part

if TYPE_CHECKING:
    from mtlab.tasks import Task

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"{_NAME}(\.{_NAME})*")
FACTORY_FORMS = "'package.module:function' or 'path/to/file.py:function'"

PROBE_BATCH = 3
"""Examples in the build-time probe batch (odd, so that it is unlikely to equal an output width)."""
STACK_PROBE_BATCH = 2


# --------------------------------------------------------------------------------------------------------- options


def split_factory(factory: str) -> tuple[str, str, bool]:
    """``"where:attr"`` -> ``(where, attr, is_file)``; ``ValueError`` naming the accepted forms otherwise."""
    where, colon, attr = factory.rpartition(":")  # rpartition: a Windows path has a colon of its own
    if not colon or not where or not _DOTTED.fullmatch(attr):
        raise ValueError(f"{factory!r} is not {FACTORY_FORMS}")
    is_file = where.endswith(".py")
    if not is_file and not _DOTTED.fullmatch(where):
        raise ValueError(f"{factory!r} is not {FACTORY_FORMS} ({where!r} is neither a module path nor a .py file)")
    return where, attr, is_file


@register_model_kind
class CustomModel(ModelKind):
    """The user's own network: a factory ``build(task_outputs, input_shape, **options)`` returning an
    ``nn.Module`` that maps a batch (B, *input_shape) to ``{task: (B, outputs)}``."""

    kind: Literal["custom"]
    factory: str = Field(
        description=f"The function that builds the network: {FACTORY_FORMS} (a relative file path is relative to "
        "the config file's directory). Called as build(task_outputs, input_shape, **options)."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments passed to the factory.")
    stack: Literal["auto", "never"] = Field(
        "auto",
        description="auto: train several seeds as one vmapped model where that pays and the network allows it "
        "(checked by a trial forward); never: train seeds one after another.",
    )

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, factory: str) -> str:
        split_factory(factory)
        return factory

    def trunk_configs(self) -> list[TrunkOptions]:
        return []  # no mtlab trunk: nothing for a search to vary or an analysis to hook

    def dense_only(self) -> bool:
        # Unknown before the network is built (that needs the dataset's input shape), so answered for what is asked
        # of it that must hold: the factory adapts the network to the input shape, so flat feature vectors are
        # accepted (the table dataset's check), and the inputs are passed as they are (no channels-last layout,
        # which a rank-2 batch or a user's .view() would not survive). The cost: on a CPU, seeds of a conv net are
        # stacked where running them one by one would be faster (CustomNet.dense_only answers for the built net).
        return True

    def stackable(self) -> bool:
        """Whether the config allows stacking seeds at all (the built net may still refuse: CustomNet.stack_problem)."""
        return self.stack != "never"

    def sharing_label(self) -> str:
        return "custom"

    def resolve_paths(self, base: Path) -> None:
        where, attr, is_file = split_factory(self.factory)
        if is_file and not Path(where).expanduser().is_absolute():
            self.factory = f"{(Path(base) / where).resolve()}:{attr}"

    @classmethod
    def example(cls) -> ModelExample:
        return ModelExample({"kind": "custom", "factory": f"{__name__}:example_factory"}, FASHION_TASKS, (1, 12, 12))

    def build(self, tasks: dict[str, Task], input_shape: tuple[int, ...]) -> CustomNet:
        names = list(tasks)
        outputs = {t: tasks[t].outputs for t in names}
        build = load_factory(self.factory)
        try:
            inspect.signature(build).bind(outputs, input_shape, **self.options)
        except TypeError as e:
            raise MtlabError(
                f"model.factory {self.factory}: cannot be called as build(task_outputs, input_shape, **options) "
                f"with options {self.options}: {e}"
            ) from None
        except ValueError:
            pass  # no signature to check (a builtin): the call itself will tell
        try:
            module = build(dict(outputs), tuple(input_shape), **self.options)
        except MtlabError:
            raise
        except Exception as e:  # the user's code: what it raised and where in it, not mtlab's traceback
            raise UserCodeError(
                f"model.factory {self.factory} with options {self.options} raised {_one_line(e)}",
                user_frames(e, source_dir(build)),
            ) from e
        if not isinstance(module, nn.Module):
            raise MtlabError(f"model.factory {self.factory}: returned a {type(module).__name__}, not a torch.nn.Module")
        reason = None if self.stackable() else "model.stack is 'never'"
        dense = frozenset(t for t in names if tasks[t].task_type.dense)
        return CustomNet(module, outputs, tuple(input_shape), factory=self.factory, stack_problem=reason, dense=dense)


def example_factory(task_outputs: dict[str, int], input_shape: tuple[int, ...], hidden: int = 8) -> nn.Module:
    """A factory of the form ``model.factory`` names (the kind's example): a shared dense layer, a linear head per
    task; (B, *input_shape) -> ``{task: (B, outputs)}``."""

    class TwoLayers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            width = 1
            for d in input_shape:
                width *= d
            self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(width, hidden), nn.ReLU())
            self.heads = nn.ModuleDict({t: nn.Linear(hidden, n) for t, n in task_outputs.items()})

        def forward(self, x: Tensor) -> dict[str, Tensor]:
            h = self.trunk(x)  # (B, hidden)
            return {t: head(h) for t, head in self.heads.items()}

    return TwoLayers()


# --------------------------------------------------------------------------------------------------------- factory

_FILE_MODULES: dict[Path, tuple[int, Any]] = {}
"""Resolved factory file -> (modification time in ns, its module): a file is executed once per version."""


def load_factory(factory: str) -> Callable[..., Any]:
    """The callable named by ``factory`` (``module.path:attr`` or ``file.py:attr``); a :class:`MtlabError` naming
    the factory when the module, file or attribute is missing."""
    where, attr, is_file = split_factory(factory)
    if is_file:
        module = _load_file(factory, Path(where).expanduser())
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as e:
            if e.name is None or not (where == e.name or where.startswith(f"{e.name}.")):
                raise  # the factory's module exists but imports something missing: its own traceback says what
            raise MtlabError(
                f"model.factory {factory}: no module {e.name!r} on the Python path (install the package, or give a "
                "file: 'path/to/file.py:function')"
            ) from None
    target: Any = module
    for i, name in enumerate(attr.split(".")):
        if not hasattr(target, name):
            owner = ".".join([where, *attr.split(".")[:i]]) if not is_file else where
            raise MtlabError(f"model.factory {factory}: {owner} has no attribute {name!r}")
        target = getattr(target, name)
    if not callable(target):
        raise MtlabError(f"model.factory {factory}: {attr} is a {type(target).__name__}, not a function")
    return target


def _load_file(factory: str, path: Path) -> Any:
    path = path.resolve()
    if not path.is_file():
        raise MtlabError(
            f"model.factory {factory}: no file {path} (a relative path is relative to the config file's directory)"
        )
    mtime = path.stat().st_mtime_ns
    cached = _FILE_MODULES.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"_mtlab_custom_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise MtlabError(f"model.factory {factory}: {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and typing look classes up by their module's name
    folder = str(path.parent)
    sys.path.insert(0, folder)  # so that the file can import its sibling modules while it is executed
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's file: what it raised and where in it
        sys.modules.pop(name, None)
        raise UserCodeError(f"model.factory {factory}: running {path} raised {_one_line(e)}",
                            user_frames(e, path.parent)) from e  # fmt: skip
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    _FILE_MODULES[path] = (mtime, module)
    return module


def _one_line(error: BaseException) -> str:
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def source_dir(code: Any) -> Path | None:
    """The directory of the file that defines the function ``code`` (None for a builtin)."""
    filename = getattr(getattr(code, "__code__", None), "co_filename", None)
    return Path(filename).resolve().parent if filename and not filename.startswith("<") else None


def user_frames(error: BaseException, own_dir: Path | None) -> str:
    """The traceback lines of ``error`` in the user's own code, as Python prints them: the frames in ``own_dir``
    (where the user's factory is), or in neither mtlab, the standard library nor an installed package."""
    mtlab_dir = Path(__file__).resolve().parents[1]
    paths = sysconfig.get_paths()
    libraries = [Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths]

    def is_users(filename: str) -> bool:
        if filename.startswith("<"):
            return False
        path = Path(filename).resolve()
        if path.is_relative_to(mtlab_dir):
            return False
        if own_dir is not None and path.is_relative_to(own_dir):
            return True
        return not any(path.is_relative_to(lib) for lib in libraries)

    frames = [f for f in traceback.extract_tb(error.__traceback__) if is_users(f.filename)]
    return "".join(traceback.format_list(frames))


# ------------------------------------------------------------------------------------------------------------ parts


class ParameterView(nn.Module):
    """Some of ``owner``'s own parameters (``recurse=False``), as a module for a :class:`Part`.

    It registers nothing (the parameters stay ``owner``'s, so nothing is counted, moved or saved twice) and answers
    ``parameters()`` / ``named_parameters()`` with the listed parameters under their names relative to ``owner``.
    """

    def __init__(self, owner: nn.Module, names: list[str]):
        super().__init__()
        object.__setattr__(self, "_owner", (owner,))  # a tuple: not registered as a submodule
        self.names = tuple(names)

    @property
    def owner(self) -> nn.Module:
        return self._owner[0]

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, nn.Parameter]]:
        for name in self.names:
            yield (f"{prefix}.{name}" if prefix else name), getattr(self.owner, name)

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        for _, p in self.named_parameters():
            yield p

    def forward(self, *args: Any) -> Any:
        raise TypeError("a ParameterView only lists parameters; call the module that owns them")

    def extra_repr(self) -> str:
        return f"{type(self.owner).__name__}: {', '.join(self.names)}"


def cut_parts(root: nn.Module, prefix: str, reach: Mapping[str, frozenset[str]]) -> list[Part]:
    """Parts of ``root`` (found at ``prefix`` in the network) for ``reach``: full parameter name -> reaching tasks.

    Each subtree whose parameters all have one set of reaching tasks is one part; where they differ, the module's
    own parameters form a :class:`ParameterView` part per task set and each child is cut the same way. Parameters
    are named as ``named_parameters()`` of the whole network names them (a tied parameter: by its first name).
    """
    parts: list[Part] = []

    def visit(path: str, module: nn.Module) -> None:
        under = [n for n in reach if n.startswith(f"{path}.")]
        if not under:
            return
        sets = {reach[n] for n in under}
        own = {f"{path}.{n}" for n, _ in module.named_parameters()}
        if len(sets) == 1 and own == set(under):
            parts.append(Part(path, module, next(iter(sets))))
            return
        direct: dict[frozenset[str], list[str]] = {}
        for n in under:
            owner, _, leaf = n.rpartition(".")
            if owner == path:
                direct.setdefault(reach[n], []).append(leaf)
        for tasks, leaves in direct.items():
            parts.append(Part(path, ParameterView(module, leaves), tasks))
        for child_name, child in module.named_children():
            visit(f"{path}.{child_name}", child)

    visit(prefix, root)
    return parts


# -------------------------------------------------------------------------------------------------------------- net


class CustomNet(MultiTaskNet):
    """The user's module (``self.net``), checked, with its parameters split by the tasks whose losses reach them."""

    def __init__(
        self,
        net: nn.Module,
        outputs: Mapping[str, int],
        input_shape: tuple[int, ...],
        *,
        factory: str = "custom",
        stack_problem: str | None = None,
        dense: frozenset[str] = frozenset(),
    ):
        super().__init__(list(outputs))
        self.net = net
        self.outputs = dict(outputs)
        self.input_shape = tuple(input_shape)
        self.dense = dense  # tasks whose outputs are maps (batch, width, H, W) at the input's height and width
        self.factory = factory
        self._stack_checked = stack_problem is not None
        self._stack_problem = stack_problem
        self._parts = self._probe()

    # --- forward ------------------------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = self.net(x)
        return {task: out[task] for task in self.task_names}

    def features(self, x: Tensor) -> dict[str, Tensor]:
        return {}  # no mtlab trunk to read features from

    def staged_trunks(self) -> dict[str, nn.Module]:
        return {}

    def parts(self) -> list[Part]:
        return list(self._parts)

    def parameter_counts(self) -> dict[str, int]:
        # A module whose own parameters split between task sets gives two parts of one name: tell them apart.
        parts = self.parts()
        names = [part.name for part in parts]
        counts: dict[str, int] = {}
        for part in parts:
            key = part.name if names.count(part.name) == 1 else f"{part.name} ({'+'.join(sorted(part.tasks))})"
            counts[key] = sum(p.numel() for p in part.module.parameters())
        counts["shared"] = sum(p.numel() for p in self.shared_parameters())
        for task in self.task_names:
            counts[f"task:{task}"] = sum(p.numel() for p in self.task_parameters(task))
        return counts

    def dense_only(self) -> bool:
        """Whether the built network has no convolution (where stacking seeds pays on a CPU)."""
        return not any(isinstance(m, nn.modules.conv._ConvNd) for m in self.modules())

    # --- build-time checks --------------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"model.factory {self.factory}"

    def check_outputs(self, out: Any, batch: int, prefix: tuple[int, ...] = ()) -> None:
        """Raise a :class:`MtlabError` unless ``out`` is ``{task: (*prefix, batch, width)}`` for every task -
        ``(*prefix, batch, width, H, W)`` at the input's H and W for a dense task."""
        if not isinstance(out, Mapping):
            raise MtlabError(
                f"{self._where()}: the network returned a {type(out).__name__}; it must return a dict "
                f"{{task: outputs (batch, width)}} with tasks {self.outputs}"
            )
        for task, width in self.outputs.items():
            if task not in out:
                raise MtlabError(
                    f"{self._where()}: the network's outputs lack task {task!r} (expected width {width}); "
                    f"it returned {sorted(map(str, out))}"
                )
            value = out[task]
            maps = tuple(self.input_shape[1:]) if task in self.dense else ()
            expected = (*prefix, batch, width, *maps)
            shape = ", ".join(map(str, ("batch", width, *maps)))
            if not isinstance(value, Tensor):
                raise MtlabError(
                    f"{self._where()}: output {task!r} is a {type(value).__name__}, not a tensor of shape ({shape})"
                )
            if tuple(value.shape) != expected:
                raise MtlabError(
                    f"{self._where()}: output {task!r} has shape {tuple(value.shape)} for a batch of {batch}; "
                    f"expected ({shape}): width {width} is what task {task!r} needs"
                    + (" (a map per example at the input's height and width)" if maps else "")
                )
            if not value.is_floating_point():
                raise MtlabError(f"{self._where()}: output {task!r} is {value.dtype}; it must be a float tensor")
        extra = [str(k) for k in out if k not in self.outputs]
        if extra:
            raise MtlabError(
                f"{self._where()}: the network returned outputs {extra} that are not trained tasks; "
                f"the trained tasks are {list(self.outputs)}"
            )

    def _probe(self) -> list[Part]:
        """One forward pass on a random batch: check the outputs, find what each task's loss reaches, cut parts."""
        named = dict(self.named_parameters())
        frozen = [n.removeprefix("net.") for n, p in named.items() if not p.requires_grad]
        if frozen:
            raise MtlabError(
                f"{self._where()}: parameters {_few(frozen)} do not require grad; mtlab trains every parameter "
                "(keep a fixed tensor as a buffer: module.register_buffer)"
            )
        if not named:
            raise MtlabError(f"{self._where()}: the network has no parameters")
        first = next(iter(named.values()))
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(PROBE_BATCH, *self.input_shape, generator=generator).to(first.device, first.dtype)
        with _restored(self), torch.enable_grad():
            self.eval()
            try:
                out = self.net(x)
            except MtlabError:
                raise
            except Exception as e:  # the user's forward: what it raised and where in it
                raise UserCodeError(
                    f"{self._where()}: the network's forward on a random batch {tuple(x.shape)} raised {_one_line(e)}",
                    user_frames(e, source_dir(type(self.net).forward)),
                ) from e
            self.check_outputs(out, PROBE_BATCH)
            params = list(named.values())
            reached: dict[str, set[str]] = {n: set() for n in named}
            for i, task in enumerate(self.task_names):
                value = out[task]
                if not value.requires_grad:
                    raise MtlabError(f"{self._where()}: output {task!r} depends on no parameter of the network")
                last = i == len(self.task_names) - 1
                grads = torch.autograd.grad(value.sum(), params, retain_graph=not last, allow_unused=True)
                for n, g in zip(named, grads, strict=True):
                    if g is not None:
                        reached[n].add(task)
        everyone = frozenset(self.task_names)
        reach = {n: frozenset(tasks) for n, tasks in reached.items()}
        declared = getattr(self.net, "shared_parameters", None)
        if callable(declared):
            ids = {id(p): n for n, p in named.items()}
            given = list(declared())
            strangers = [i for i, p in enumerate(given) if id(p) not in ids]
            if strangers:
                raise MtlabError(
                    f"{self._where()}: shared_parameters() yields tensors that are not parameters of the network "
                    f"(positions {strangers[:5]})"
                )
            for p in given:
                reach[ids[id(p)]] = everyone
        unused = [n.removeprefix("net.") for n, tasks in reach.items() if not tasks]
        if unused:
            raise MtlabError(
                f"{self._where()}: no task's output depends on parameters {_few(unused)}, so they would never "
                "train; remove them or use them in the forward pass (a parameter reached only by some inputs can "
                "be listed in the module's shared_parameters())"
            )
        return cut_parts(self.net, "net", reach)

    # --- stacking -----------------------------------------------------------------------------------------------

    def stack_problem(self, stacked: Callable[[list[nn.Module]], nn.Module] | None = None) -> str | None:
        """Why K copies of this net cannot be stacked, in one line, or None if they can.

        The trainer passes how it stacks copies (``stacked``: :class:`~mtlab.train.replicas.StackedReplicas`); the
        first such call tries it (a train-mode forward and backward and an eval-mode forward of 2 stacked copies on a
        tiny batch) and the answer is remembered. Without ``stacked``: what is known so far (None until tried)."""
        if not self._stack_checked and stacked is not None:
            self._stack_problem = self._try_stacking(stacked)
            self._stack_checked = True
        return self._stack_problem

    def _try_stacking(self, stacked: Callable[[list[nn.Module]], nn.Module]) -> str | None:
        first = next(self.parameters())
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(2, STACK_PROBE_BATCH, *self.input_shape, generator=generator).to(first.device, first.dtype)
        with _restored(self), torch.enable_grad():
            try:
                replicas = stacked([self, self])
                replicas.train(True)
                out = replicas(x)
                self.check_outputs(out, STACK_PROBE_BATCH, prefix=(2,))
                total = sum(v.sum() for v in out.values())
                torch.autograd.grad(total, replicas.parameters(), allow_unused=True)
                replicas.train(False)
                with torch.no_grad():
                    self.check_outputs(replicas(x), STACK_PROBE_BATCH, prefix=(2,))
            except Exception as e:  # any failure means: train the seeds one after another
                return _one_line(e)
        return None


# ----------------------------------------------------------------------------------------------------------- helpers


class _restored:
    """Context: on exit, every submodule's train/eval mode, every buffer's value and torch's CPU random state are
    as they were on entry (a probe must leave no trace on the network or on the seeded generators)."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __enter__(self) -> None:
        self.modes = [(m, m.training) for m in self.module.modules()]
        self.buffers = [(name, b, b.detach().clone()) for name, b in self.module.named_buffers()]
        self.rng = torch.random.get_rng_state()

    def __exit__(self, *exc: Any) -> None:
        torch.random.set_rng_state(self.rng)
        for m, mode in self.modes:
            m.training = mode
        with torch.no_grad():
            for name, original, saved in self.buffers:
                owner_name, _, leaf = name.rpartition(".")
                owner = self.module.get_submodule(owner_name)
                if owner._buffers.get(leaf) is not original:
                    owner._buffers[leaf] = original
                original.copy_(saved)


def _few(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _one_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = f"{type(e).__name__}: {lines[0] if lines else '(no message)'}"
    return text if len(text) <= 200 else text[:197] + "..."
