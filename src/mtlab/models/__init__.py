"""Models: trunks and model kinds (one module each, built from their own options), task heads, and the networks
built from a run config.

Kinds: ``multitask`` (hard sharing), ``cross_stitch``, ``mtan``, ``mmoe``, ``dselect_k``, ``ltb``, ``ple`` (CGC with
one level), ``pairs``, ``segnet`` / ``segnet_mtan``, ``deeplab``, and ``custom`` (the user's own network,
:mod:`.custom`); ``mtlab`` lists the registered ones, plug-ins included. Trunks: ``mlp``, ``cnn``, ``resnet``
(:mod:`.trunks`), ``imagenet_resnet``, ``timm``.

:func:`build_model` is the entry point. The names below are loaded on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtlab.models.base import MultiTaskNet, Part
    from mtlab.models.registry import (
        MODEL_KINDS,
        TRUNKS,
        build_model,
        create_trunk,
        register_model_kind,
        register_trunk,
    )

_EXPORTS = {
    "MultiTaskNet": "mtlab.models.base",
    "Part": "mtlab.models.base",
    **{name: "mtlab.models.registry" for name in (
        "MODEL_KINDS", "TRUNKS", "build_model", "create_trunk", "register_model_kind", "register_trunk")},
}  # fmt: skip

__all__ = [
    "MODEL_KINDS", "TRUNKS", "MultiTaskNet", "Part", "build_model", "create_trunk", "register_model_kind",
    "register_trunk",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
