"""User-facing errors.

Anything raised as a :class:`MtlabError` is the user's to fix (a config key, a data file, a flag): the command line
prints its message on one line and exits with code 2, without a traceback (a :class:`UserCodeError` is followed by
the frames of the user's own code that raised). Everything else is a bug in mtlab.
A name the user mistyped (a key, a method, a study) comes with the closest valid one: :func:`did_you_mean`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MtlabError(Exception):
    """An error the user can fix; its message names the thing to fix and how."""


class ConfigError(MtlabError):
    """A configuration value is unknown, of the wrong type or impossible; the message starts with its key path."""


class DataError(MtlabError):
    """A dataset file is missing, truncated or corrupt; the message names the file and how to get it."""


class UserCodeError(MtlabError):
    """The user's own code (a model factory, its network) raised: the message names that code, what it was given
    and what it raised; ``frames`` are the traceback lines in the user's own files (never mtlab's), which the
    command line prints after the message as they are."""

    def __init__(self, message: str, frames: str = ""):
        super().__init__(message)
        self.frames = frames


def closest(word: object, choices: Iterable[object]) -> str | None:
    """The choice closest to ``word`` (:func:`difflib.get_close_matches`), or None when none is close."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return matches[0] if matches else None


def did_you_mean(word: object, choices: Iterable[object], otherwise: str = "", quote: bool = True) -> str:
    """``"did you mean 'x'?"`` for the choice closest to ``word``, else ``otherwise`` (e.g. the list of choices).

    ``quote=False`` for names the user types as they are (keys, study names), ``True`` for values."""
    match = closest(word, choices)
    if match is None:
        return otherwise
    return f"did you mean {match!r}?" if quote else f"did you mean {match}?"


def check_chosen(names: list[str], known: Iterable[str], kind: str, everything: str) -> list[str]:
    """``names`` if it is a non-empty list of distinct members of ``known``, else ValueError in one line: an empty
    list (leave the key out for ``everything`` instead), an unknown name (``kind``, e.g. "CelebA attribute", with the
    closest known one or the list), or a name given twice."""
    known = list(known)
    noun = kind.split()[-1]
    if not names:
        raise ValueError(f"name at least one {noun}, or leave the key out for {everything}")
    for name in names:
        if name not in known:
            raise ValueError(f"unknown {kind} {name!r}; " + did_you_mean(name, known, f"known: {', '.join(known)}"))
    if len(set(names)) != len(names):
        raise ValueError(f"names {'an' if noun[0] in 'aeiou' else 'a'} {noun} twice")
    return names
