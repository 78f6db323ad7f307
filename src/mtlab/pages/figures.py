"""Saving a page's figures: one house style, PNG / SVG / PDF files that are equal bytes for equal pictures, and
what a page shows for a figure (:class:`SavedFigure`) or instead of one (:class:`SkippedFigure`).

Figures are :class:`matplotlib.figure.Figure` objects built directly, never through ``pyplot``; this module does
not import matplotlib itself, so importing it costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mtlab import atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_FORMATS = ("png", "svg", "pdf")
"""Formats of the report's figures (``--figure-format``): png (default), svg (embedded in the HTML as vector), pdf
(for papers; written beside a PNG, which the HTML embeds)."""

DPI = 120
WIDTH = 11.0  # inches: 1320 px at DPI, shown at the page's width
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "svg.hashsalt": "mtlab",  # SVG element ids from a fixed salt: equal pictures are equal bytes
    "svg.fonttype": "path",  # text as outlines: the SVG looks the same where the fonts are missing
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by publishers (Type 3 often is not)
}
# No version stamp or date in the files, so equal pictures are equal bytes.
METADATA = {
    "png": {"Software": None},
    "svg": {"Creator": None, "Date": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
}


@dataclass(frozen=True)
class SavedFigure:
    """A figure on disk and the words that go with it in the report. ``path`` is the file the report shows (PNG or
    SVG); ``extra`` holds files written beside it (the PDF of ``--figure-format pdf``)."""

    path: Path
    title: str
    caption: str
    extra: tuple[Path, ...] = field(default=())


@dataclass(frozen=True)
class SkippedFigure:
    """A figure not drawn because it would show nothing (e.g. every value equal), and the sentence that says so."""

    title: str
    text: str


def save_figure(fig: Figure, path: Path, title: str, caption: str, fmt: str = "png") -> SavedFigure:
    """Write ``fig`` at ``path`` with ``fmt``'s suffix (white background, no version stamp or date, so equal pictures
    are equal bytes). ``pdf`` also writes a PNG beside the PDF, which the HTML report embeds."""
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; choose one of {', '.join(FIGURE_FORMATS)}")
    shown = "svg" if fmt == "svg" else "png"
    stem = path.stem if path.suffix.lstrip(".") in FIGURE_FORMATS else path.name  # "sweep-optim.lr" keeps its ".lr"
    written = []
    for kind in dict.fromkeys([shown, fmt]):
        target = path.with_name(f"{stem}.{kind}")
        with atomic.replacing(target) as temporary:
            fig.savefig(temporary, dpi=DPI, facecolor="white", metadata=METADATA[kind])
        written.append(target)
    return SavedFigure(written[0], title, caption, tuple(written[1:]))


def remove_stale(out_dir: Path, kept: list[SavedFigure]) -> None:
    """Delete figure files in ``out_dir`` this build did not write: a figure skipped now, or another format than
    the one asked for, must not linger beside the report (``figures/`` is the report's own directory)."""
    keep = {p for f in kept for p in (f.path, *f.extra)}
    for old in out_dir.iterdir():
        if old.suffix.lstrip(".") in FIGURE_FORMATS and old not in keep:
            old.unlink(missing_ok=True)
