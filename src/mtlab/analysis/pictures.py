"""Image grids with one colour scale per grid, so panels of the same figure can be compared by eye.

A grid is a list of *rows* of panels; a row longer than ``wrap`` continues on the next line, and each row may carry
a label at its left (an input image's caption, a filter's number). Every panel of a grid is drawn with the same
value -> colour map: ``vmin`` / ``vmax`` are the smallest and largest value over all panels, or ``-m`` / ``m`` with
``m`` the largest magnitude when the values are signed (kernel weights, pre-activation feature maps), so zero is the
centre of a diverging colour map. With ``clip`` = p > 0 the range is the p-th and (100 - p)-th percentile instead
(the p-th percentile of magnitudes, signed), so a few extreme pixels cannot wash out the rest; values beyond it
saturate, and the colour bar's arrows say so. One colour bar per figure states the scale. RGB panels (3 channels)
are mapped through the same range into [0, 1].

Figures are :class:`matplotlib.figure.Figure` objects built without ``pyplot`` (as in :mod:`mtlab.report.figures`),
and matplotlib is imported only when a grid is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANEL = 0.95  # inches per panel side
LABEL = 1.3  # inches left of the grid for row labels


@dataclass(frozen=True)
class Scale:
    """A shared colour scale: the value range and the colour map."""

    vmin: float
    vmax: float
    cmap: str


def shared_scale(panels: Sequence[np.ndarray], *, signed: bool, cmap: str, clip: float = 0.0) -> Scale:
    """One range over every value of every panel (or its ``clip`` percentiles); centred on zero when ``signed``."""
    values = np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in panels])
    if signed:
        m = float(np.percentile(np.abs(values), 100 - clip)) or 1.0
        return Scale(-m, m, cmap)
    lo, hi = (float(v) for v in np.percentile(values, [clip, 100 - clip]))
    return Scale(lo, hi if hi > lo else lo + 1.0, cmap)


def displayable(image: np.ndarray) -> np.ndarray:
    """A (c, H, W) tensor as one picture: grey (H, W) for one channel, (H, W, 3) for RGB, and the channels side by
    side (H, c*W) otherwise (a pair model's two digits); (H, W) stays as it is."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    if image.shape[0] == 1:
        return image[0]
    if image.shape[0] == 3:
        return np.moveaxis(image, 0, -1)
    return np.concatenate(list(image), axis=1)


def draw_grid(
    rows: Sequence[Sequence[np.ndarray]],
    *,
    title: str,
    row_labels: Sequence[str] | None = None,
    panel_titles: Sequence[Sequence[str]] | None = None,
    signed: bool = False,
    clip: float = 0.0,
    cmap: str | None = None,
    wrap: int = 16,
    colorbar_label: str = "",
) -> Figure:
    """Draw ``rows`` of panels (each (H, W), (c, H, W) or (H, W, 3), see :func:`displayable`) on one shared scale.

    Rows longer than ``wrap`` continue on further lines; ``row_labels[i]`` labels row i's first line, and
    ``panel_titles[i][j]`` names panel j of row i. ``cmap`` defaults to grey, or red-blue when ``signed``;
    ``signed`` and ``clip`` choose the shared range (see the module docstring).
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    rows = [[displayable(p) for p in row] for row in rows]
    panels = [p for row in rows for p in row]
    scale = shared_scale(panels, signed=signed, cmap=cmap or ("RdBu_r" if signed else "gray"), clip=clip)
    columns = min(wrap, max(len(row) for row in rows))
    lines = [(r, start) for r, row in enumerate(rows) for start in range(0, len(row), columns)]
    aspect = max(p.shape[1] / p.shape[0] for row in rows for p in row)  # widest panel, width / height
    titled = panel_titles is not None
    width = LABEL * bool(row_labels) + columns * PANEL * aspect + 1.1
    height = len(lines) * (PANEL + 0.25 * titled) + 0.7
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(len(lines), columns, squeeze=False)
    norm = Normalize(scale.vmin, scale.vmax)
    for (r, start), line_axes in zip(lines, axes, strict=True):
        for j, ax in enumerate(line_axes):
            ax.set_xticks([])
            ax.set_yticks([])
            index = start + j
            if index >= len(rows[r]):
                ax.axis("off")
                continue
            panel = rows[r][index]
            if panel.ndim == 3:  # RGB through the shared range
                ax.imshow(np.clip(norm(panel), 0.0, 1.0), interpolation="nearest")
            else:
                ax.imshow(panel, cmap=scale.cmap, norm=norm, interpolation="nearest")
            for spine in ax.spines.values():
                spine.set_visible(False)
            if titled:
                ax.set_title(panel_titles[r][index], fontsize=7, pad=2)
        if row_labels and start == 0:
            line_axes[0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=9, labelpad=6)
    fig.suptitle(title, fontsize=11, fontweight="bold")
    low = any(p.min() < scale.vmin for p in panels)
    high = any(p.max() > scale.vmax for p in panels)
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[low, high]
    bar = fig.colorbar(
        ScalarMappable(norm, scale.cmap), ax=axes, shrink=min(0.9, 2.5 / len(lines) + 0.3), aspect=25, extend=extend
    )
    bar.ax.tick_params(labelsize=7)
    if colorbar_label:
        bar.set_label(colorbar_label, fontsize=8)
    return fig
