"""The report figures' layout choices, as pure functions of numbers and names (no matplotlib, no store), so each
choice is tested directly: which learning curves to highlight, whether an axis needs a log scale, whether a figure
would show anything, how far a dot plot's axis reaches, how to wrap a panel title, and where point labels go so that
they do not overlap."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np

MANY_CURVES = 8  # variants; with more, learning curves highlight a few and grey out the rest
HIGHLIGHT_UP_TO = 4  # the best variants a crowded learning-curve figure highlights, besides the controls
LOG_SPAN = 10.0  # task weights spanning more than this factor are drawn on a log axis
FEW_VALUES = 3  # a bar figure of at most this many distinct values is said in a sentence instead
CHAR_WIDTH = 0.6  # average glyph width of the sans-serif font, in units of the font size


def highlighted_variants(
    best_first: Sequence[str], controls: Sequence[str], *, many: int = MANY_CURVES, top: int = HIGHLIGHT_UP_TO
) -> list[str] | None:
    """The variants a learning-curve figure draws in colour when it has more than ``many`` (``None``: fewer, draw
    them all): the ``top`` first of ``best_first`` (every variant, best first) and every control, in that order."""
    if len(best_first) <= many:
        return None
    chosen = [v for v in best_first if v not in controls][:top]
    return chosen + [c for c in controls if c in best_first and c not in chosen]


def weight_axis_scale(values: Sequence[float], *, span: float = LOG_SPAN) -> str:
    """``"log"`` when the positive finite ``values`` span more than ``span`` times (e.g. nash_mtl's ~55 beside
    weights of 0.5), ``"symlog"`` when they do and some value is 0 or below (a log axis cannot show 0), else
    ``"linear"``."""
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    positive = finite[finite > 0]
    if len(positive) < 2 or positive.max() <= span * positive.min():
        return "linear"
    return "log" if (finite > 0).all() else "symlog"


def all_equal(values: Sequence[float], *, rel_tol: float = 1e-9) -> bool:
    """Whether every finite value is the same (a figure of them would show nothing); true for no values."""
    finite = [v for v in values if math.isfinite(v)]
    return all(math.isclose(v, finite[0], rel_tol=rel_tol, abs_tol=1e-12) for v in finite)


def few_values_sentence(
    names: Sequence[str], values: Sequence[float], what: str, *, most: int = FEW_VALUES, named_up_to: int = 3
) -> str | None:
    """A sentence that says what a bar figure would, when its values take at most ``most`` distinct values over more
    variants than that (``None``: draw the figure). ``what`` names the quantity (``trainable parameters``)."""
    groups: dict[float, list[str]] = {}
    for name, value in zip(names, values, strict=True):
        if math.isfinite(value):
            groups.setdefault(value, []).append(name)
    if not groups:
        return None
    if len(groups) == 1:
        ((value, members),) = groups.items()
        return f"Every variant ({len(members)}) has {value:,.0f} {what}; no figure is drawn."
    if len(groups) > most or len(groups) == len(names):  # many values, or one per variant: the bars tell
        return None

    def who(members: list[str]) -> str:
        quoted = ", ".join(f'"{m}"' for m in members[:named_up_to])
        if len(members) == 1:
            return quoted
        more = f" and {len(members) - named_up_to} more" if len(members) > named_up_to else ""
        return f"{len(members)} variants ({quoted}{more})"

    parts = [f"{value:,.0f} for {who(members)}" for value, members in sorted(groups.items(), key=lambda g: -len(g[1]))]
    return f"{what.capitalize()}: " + "; ".join(parts) + f". No figure: only {len(groups)} distinct values."


def fixed_weights_sentence(series: dict[str, dict[str, Sequence[float]]]) -> str | None:
    """A sentence instead of a task-weight figure when no weight ever changed: ``series`` maps task -> variant ->
    every value recorded (all seeds and epochs). ``None`` when some variant's weight of some task moved (the figure
    shows that), or when there is nothing."""
    if not any(len(v) for per_variant in series.values() for v in per_variant.values()):
        return None
    if not all(all_equal(values) for per_variant in series.values() for values in per_variant.values()):
        return None
    distinct = {
        task: sorted({round(float(v[0]), 12) for v in per_variant.values() if len(v)})
        for task, per_variant in series.items()
    }
    every = {w for ws in distinct.values() for w in ws}
    if len(every) == 1:
        return f"Every variant gave every task the same weight ({every.pop():g}) in every epoch; no figure is drawn."
    listed = "; ".join(f"{task} {' or '.join(f'{w:g}' for w in ws)}" for task, ws in distinct.items() if ws)
    return f"Every variant kept its task weights fixed in every epoch ({listed}); no figure is drawn."


def dot_axis_limits(
    values: Sequence[float], *, percent: bool, nonnegative: bool = False, min_span: float | None = None
) -> tuple[float, float]:
    """The range of a dot-and-interval axis holding every value (means, interval ends, seeds): the data with a
    margin, at least ``min_span`` wide (default 5 percentage points for percentages, else 5% of the largest
    magnitude) so that a fraction of a point does not fill the panel, and inside [0, 100] for percentages (or
    above 0 for ``nonnegative`` values) unless a value itself lies outside (an interval's end). Dots mark values
    by position, not length, so the axis need not start at 0; the minimum span keeps small differences looking
    small."""
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return (0.0, 100.0) if percent else (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if min_span is None:
        min_span = 5.0 if percent else 0.05 * max(abs(lo), abs(hi), 1e-12)
    margin = 0.08 * (hi - lo)
    lo, hi = lo - margin, hi + margin
    if hi - lo < min_span:
        middle = (lo + hi) / 2
        lo, hi = middle - min_span / 2, middle + min_span / 2
    floor, ceiling = (0.0, 100.0) if percent else (0.0 if nonnegative else -math.inf, math.inf)
    floor = floor if finite.min() >= floor else -math.inf  # a value past a bound (an interval reaching below 0, past
    ceiling = ceiling if finite.max() <= ceiling else math.inf  # 100 %) is shown whole, with its margin
    if lo < floor:
        lo, hi = floor, min(ceiling, hi + floor - lo)
    if hi > ceiling:
        lo, hi = max(floor, lo - (hi - ceiling)), ceiling
    return lo, hi


def wrap_title(text: str, width_inches: float, fontsize: float) -> str:
    """``text`` wrapped to lines that fit a panel ``width_inches`` wide at ``fontsize`` points (kept lines stay
    whole where they fit), so neighbouring panel titles do not run into each other."""
    per_line = max(8, int(width_inches * 72 / (CHAR_WIDTH * fontsize)))
    return "\n".join(wrapped for line in text.split("\n") for wrapped in textwrap.wrap(line, per_line) or [""])


# Candidate label positions around a point, tried in this order: right, upper right, above, upper left, left,
# lower right, below, lower left (unit directions; scaled by the gap and the label's size).
DIRECTIONS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (1, -1), (0, -1), (-1, -1))


def place_labels(
    anchors: Sequence[tuple[float, float]],
    sizes: Sequence[tuple[float, float]],
    *,
    obstacles: Sequence[tuple[float, float]] = (),
    bounds: tuple[float, float, float, float] | None = None,
    gap: float = 4.0,
    marker: float = 5.0,
) -> list[tuple[float, float]]:
    """Offsets (dx, dy) of each label's lower-left corner from its anchor point, in the same units as ``anchors``
    and ``sizes`` (display points, y up), chosen greedily in the given order: the first of :data:`DIRECTIONS` whose
    box overlaps no label placed so far, no anchor or ``obstacles`` point (a square of half-side ``marker``) and
    stays inside ``bounds`` (x0, y0, x1, y1); when none is free, the one with the least overlap. Deterministic: the
    same input gives the same places."""
    points = [*anchors, *obstacles]
    placed: list[tuple[float, float, float, float]] = []
    offsets = []
    for (x, y), (w, h) in zip(anchors, sizes, strict=True):
        best, best_cost = None, math.inf
        for dx_sign, dy_sign in DIRECTIONS:
            dx = gap if dx_sign > 0 else -gap - w if dx_sign < 0 else -w / 2
            dy = gap if dy_sign > 0 else -gap - h if dy_sign < 0 else -h / 2
            box = (x + dx, y + dy, x + dx + w, y + dy + h)
            cost = sum(_overlap(box, other) for other in placed)
            cost += sum(_overlap(box, (px - marker, py - marker, px + marker, py + marker)) for px, py in points)
            if bounds is not None:
                inside = _overlap(box, bounds)
                cost += 10 * (w * h - inside)  # leaving the axes is worse than touching a neighbour
            if cost < best_cost:
                best, best_cost = (dx, dy), cost
            if cost == 0:
                break
        dx, dy = best
        placed.append((x + dx, y + dy, x + dx + w, y + dy + h))
        offsets.append((dx, dy))
    return offsets


def boxes_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return _overlap(a, b) > 0


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Area shared by boxes (x0, y0, x1, y1)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(width, 0.0) * max(height, 0.0)
