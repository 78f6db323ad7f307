"""Name -> plug-in registries that outside packages can extend through entry points.

The pattern is timm's (``timm/models/_registry.py``): a module registers its plug-ins on import, factories look them
up by the config's tag, and the tests are parametrised over the registries, so a plug-in is tested the day it is
added. Every concept has one :class:`Registry` (datasets, task types, trunks, model kinds, weighting methods,
executors, trackers), and every registry loads its plug-ins the same way, on first use:

1. its ``builtins`` - the names of mtlab's own plug-in modules, imported by name, so that a registry declared in a
   low layer (the config's) lists plug-ins that live higher up (data, models) without importing them;
2. every entry point of its ``entry_point_group`` (``mtlab.datasets``, ``mtlab.tasks``, ``mtlab.trunks``,
   ``mtlab.models``, ``mtlab.weightings``, ``mtlab.executors``, ``mtlab.trackers``) that installed packages
   declare: loading the entry point's object (a module, or anything in it) registers the plug-in as a side effect,
   exactly as mtlab's own modules do.

mtlab's own plug-ins and an outside package's are thus loaded by one mechanism and asked the same questions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from mtlab.errors import MtlabError

T = TypeVar("T")

ENTRY_POINT_GROUPS = (
    "mtlab.datasets", "mtlab.tasks", "mtlab.trunks", "mtlab.models", "mtlab.weightings", "mtlab.executors",
    "mtlab.trackers",
)
_loaded_groups: set[str] = set()


def load_entry_points(group: str) -> None:
    """Import every installed plug-in of ``group`` once. A plug-in that fails to import is one clear error naming
    the package and the entry point (a half-registered plug-in would fail later in a more confusing place)."""
    if group in _loaded_groups:
        return
    _loaded_groups.add(group)
    for point in entry_points(group=group):
        try:
            point.load()
        except Exception as e:
            owner = point.dist.name if point.dist is not None else "an installed package"
            raise MtlabError(
                f"plug-in {point.name!r} ({point.value}) of {owner}, entry point group {group}, failed to load: "
                f"{type(e).__name__}: {e}; fix or uninstall that package"
            ) from e


def load_all_entry_points() -> None:
    for group in ENTRY_POINT_GROUPS:
        load_entry_points(group)


class Registry(Generic[T]):
    """Plug-ins by name, loaded on first use: mtlab's own, then installed packages' through entry points.

    Args:
        kind: What a plug-in is ("dataset", "trunk", ...); only words the error messages.
        entry_point_group: The entry point group whose plug-ins load on first use (``mtlab.datasets``, ...).
        builtins: Module names imported on first use (mtlab's own plug-ins, which register on import).

    Example:
        ```python
        from mtlab import Registry

        SCHEDULES: Registry[type] = Registry("schedule")

        @SCHEDULES.register("warmup")
        class Warmup: ...

        SCHEDULES.get("warmup") is Warmup, SCHEDULES.names()   # True, ['warmup']
        ```
    """

    def __init__(self, kind: str, entry_point_group: str | None = None, builtins: tuple[str, ...] = ()):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.builtins = builtins
        self._items: dict[str, T] = {}
        self._loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # first: a built-in module that asks this registry while it is imported sees it
            for module in self.builtins:
                import_module(module)
        if self.entry_point_group is not None:
            load_entry_points(self.entry_point_group)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make the decorated object the plug-in ``name`` (a name can be registered once)."""

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"a {self.kind} is already registered as {name!r}")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"no {self.kind} registered as {name!r}; known: {self.names()}") from None

    def names(self) -> list[str]:
        """Registered names, in registration order (mtlab's own first, then plug-ins)."""
        self._load()
        return list(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load()
        return iter(list(self._items.items()))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items
