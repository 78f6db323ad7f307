"""Datasets a user puts in place by hand: the benchmarks whose files mtlab cannot download (NYUv2, Cityscapes,
CelebA - behind Dropbox or Google Drive links, or a licence form).

Each registers a :class:`HandPlaced` - where to get the files, the folder they go in, and how to survey and verify a
copy - so ``mtlab data list`` and ``mtlab data verify`` cover them beside the downloadable sources. Their folders are
looked for along the same chain as every source (:func:`mtlab.data.resolve.search_places`): ``data_dir`` (the
folder, then ``data_dir`` itself), ``$MTLAB_DATA/<folder>``, the user cache. These files are many (thousands of
arrays or images), so a copy is checked by its file counts and shapes, not by checksums.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mtlab.data.resolve import Place, search_places
from mtlab.errors import DataError


@dataclass(frozen=True)
class HandPlaced:
    """One dataset whose files a user fetches: ``obtain`` says from where and what to do (ends error messages);
    ``dirnames`` the folder names it is looked for under each root; ``markers`` relative paths, any of which
    makes a directory a candidate; ``survey(directory)`` a one-line state from file counts (fast, for ``mtlab data
    list``); ``verify(directory)`` the problems found by also reading every file's header (``mtlab data verify``)."""

    name: str
    dirnames: tuple[str, ...]
    obtain: str
    markers: tuple[str, ...]
    survey: Callable[[Path], str]
    verify: Callable[[Path], list[str]]


HAND_PLACED: dict[str, HandPlaced] = {}
"""By dataset name; filled as the dataset modules are imported (:mod:`mtlab.data.builtin`, entry points)."""


def register_hand_placed(spec: HandPlaced) -> HandPlaced:
    HAND_PLACED[spec.name] = spec
    return spec


def places(spec: HandPlaced, data_dir: Path | None = None) -> list[Place]:
    return search_places(spec.dirnames, data_dir)


def locate(spec: HandPlaced, data_dir: Path | None = None) -> Place | None:
    """The first place of the chain holding one of ``spec.markers``, or None."""
    for place in places(spec, data_dir):
        if any((place.directory / marker).exists() for marker in spec.markers):
            return place
    return None


def find(spec: HandPlaced, data_dir: Path | None = None) -> Path:
    """The directory of the dataset's files; :class:`DataError` listing every place looked in when there is none."""
    place = locate(spec, data_dir)
    if place is None:
        looked = "; ".join(str(p) for p in places(spec, data_dir))
        raise DataError(
            f"{spec.name} files not found (no {' or '.join(spec.markers)} in any of: {looked}); {spec.obtain}; "
            "then set data.data_dir or $MTLAB_DATA"
        )
    return place.directory
