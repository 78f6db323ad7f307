"""Models: staged trunks (MLP, CNN, small ResNet), task heads, and the networks built from a run config.

Kinds: ``multitask`` (hard sharing), ``cross_stitch``, ``mtan``, ``mmoe``, ``ple`` (CGC with one level), ``pairs``.

:func:`build_model` is the entry point; importing this package registers every trunk and model builder.
"""

from mtlab.models import cross_stitch, mmoe, mtan, multitask, pairs, ple, trunks  # noqa: F401  (import registers them)
from mtlab.models.base import MultiTaskNet, Part
from mtlab.models.registry import MODELS, TRUNKS, build_model, create_trunk, register_model, register_trunk

__all__ = [
    "MODELS",
    "TRUNKS",
    "MultiTaskNet",
    "Part",
    "build_model",
    "create_trunk",
    "register_model",
    "register_trunk",
]
