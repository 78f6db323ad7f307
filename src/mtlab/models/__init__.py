"""Models: staged trunks (MLP, CNN, small ResNet), task heads, and the networks built from a run config.

Kinds: ``multitask`` (hard sharing), ``cross_stitch``, ``mtan``, ``mmoe``, ``ple`` (CGC with one level), ``pairs``,
and ``custom`` (the user's own network, :mod:`.custom`).

:func:`build_model` is the entry point. The names below are loaded on first use (PEP 562), which registers every
trunk and model builder; a plug-in module such as :mod:`.custom` can thus be imported by the config layer without
importing the kinds that need the whole run schema.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtlab.models.base import MultiTaskNet, Part
    from mtlab.models.registry import MODELS, TRUNKS, build_model, create_trunk, register_model, register_trunk

_EXPORTS = {
    "MultiTaskNet": "mtlab.models.base",
    "Part": "mtlab.models.base",
    **{name: "mtlab.models.registry" for name in (
        "MODELS", "TRUNKS", "build_model", "create_trunk", "register_model", "register_trunk")},
}  # fmt: skip

__all__ = [
    "MODELS", "TRUNKS", "MultiTaskNet", "Part", "build_model", "create_trunk", "register_model", "register_trunk",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        importlib.import_module("mtlab.models.builtin")  # registers the built-in trunks and kinds
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
