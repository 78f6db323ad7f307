"""mtlab: run, compare and explain multi-task learning experiments.

As a library: :class:`Weighting` (``mtlab.Weighting``) puts any of mtlab's weighting methods in a training loop of
one's own (``docs/own-loop.md``); it is imported on first use, so ``import mtlab`` stays light. This ``__init__`` is
the public façade, at the top of the layers: mtlab's own modules read the version from :mod:`mtlab.version`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Half", "Weighting", "__version__"]

if TYPE_CHECKING:
    from mtlab.train.weighting import Half, Weighting
    from mtlab.version import __version__


def __getattr__(name: str) -> Any:
    """Each public name is imported on first use (``import mtlab`` itself loads nothing)."""
    if name == "__version__":
        from mtlab.version import __version__

        return __version__
    if name in ("Half", "Weighting"):
        from mtlab.train import weighting

        return getattr(weighting, name)
    raise AttributeError(f"module 'mtlab' has no attribute {name!r}")
