"""The blocks a page is made of; :mod:`mtlab.pages.render` writes a list of them as Markdown and as HTML."""

from __future__ import annotations

from dataclasses import dataclass

from mtlab.pages.figures import SavedFigure, SkippedFigure

__all__ = ["Block", "Bullets", "Cell", "Code", "Facts", "Heading", "SavedFigure", "SkippedFigure", "Table", "Text"]


@dataclass(frozen=True)
class Cell:
    """A displayed value: ``text`` (the main reading), an optional ``note`` shown beside or below it, emphasis."""

    text: str
    note: str = ""
    strong: bool = False
    kind: str = "number"  # "number" (right-aligned), "text", or "code" (identifiers, monospace)

    @property
    def plain(self) -> str:
        return f"{self.text} {self.note}".strip()


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str
    muted: bool = False


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Facts:
    """Key-value pairs: the header's run counts (``cards``) or the environment (a plain list)."""

    items: list[tuple[str, str]]
    cards: bool = False


@dataclass
class Code:
    text: str
    language: str = ""


Block = Heading | Text | Bullets | Facts | Code | Table | SavedFigure | SkippedFigure

