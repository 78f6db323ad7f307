"""mtlab: run, compare and explain multi-task learning experiments.

As a library: :class:`Weighting` (``mtlab.Weighting``) puts any of mtlab's weighting methods in a training loop of
one's own (``docs/own-loop.md``); it is imported on first use, so ``import mtlab`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Half", "Weighting", "__version__"]

if TYPE_CHECKING:
    from mtlab.train.weighting import Half, Weighting


def __getattr__(name: str) -> Any:
    if name in ("Half", "Weighting"):
        from mtlab.train import weighting

        return getattr(weighting, name)
    raise AttributeError(f"module 'mtlab' has no attribute {name!r}")
