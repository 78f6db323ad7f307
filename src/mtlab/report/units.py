"""How a metric is shown: the one place that knows which metrics are fractions (shown in percent, differences in
percentage points) and how many digits the others get.

Task types (:mod:`mtlab.tasks`) say which metrics a task reports and which way is better; this module only words
and formats them, for the study report, the search report and the terminal. ``acc``, ``f1``, ``auroc`` and the dense
tasks' ``miou``, ``pixel_acc`` and ``within_*`` (fractions of pixels) are fractions in [0, 1], stored as fractions
and shown in percent; everything else is shown as stored: ``loss`` and ``r2`` with three decimals (``r2`` is not
a percentage), ``mae`` / ``rmse`` and any other metric in the target's own units with four significant digits (taken
from a reference value, so a mean and its std share their decimals).

Importing this module imports nothing heavy (no pandas, no torch): the training progress line uses it.
"""

from __future__ import annotations

import math

FRACTIONS = frozenset({"acc", "f1", "auroc", "miou", "pixel_acc", "within_11_25", "within_22_5", "within_30"})
"""Metrics that are fractions of 1 and are shown in percent."""
MISSING = "–"
NAMES = {"acc": "accuracy", "f1": "F1", "auroc": "AUROC", "mae": "MAE", "rmse": "RMSE", "r2": "R²", "loss": "loss"}
FIXED_DECIMALS = {"loss": 3, "r2": 3}
SIGNIFICANT = 4


def metric_name(key: str) -> str:
    """The metric of a history key: ``val.item.acc`` -> ``acc``, ``test.loss`` -> ``loss``; a bare name is itself."""
    return key.rsplit(".", 1)[-1]


def is_fraction(metric: str) -> bool:
    """Whether ``metric`` (a name or a history key) is a fraction of 1, shown in percent."""
    return metric_name(metric) in FRACTIONS


def scale(metric: str) -> float:
    """Factor from the stored value to the displayed one: 100 for fractions, else 1."""
    return 100.0 if is_fraction(metric) else 1.0


def unit(metric: str) -> str:
    """The displayed value's unit: ``%`` for fractions, else '' (the target's units, or none)."""
    return "%" if is_fraction(metric) else ""


def difference_unit(metric: str) -> str:
    """The unit of a difference of two displayed values: ``pp`` (percentage points) for fractions, else ''."""
    return "pp" if is_fraction(metric) else ""


def decimals(metric: str, reference: float | None = None) -> int:
    """Decimals to show ``metric`` with: 2 for percentages, 3 for loss and r2, else four significant digits of
    ``reference`` (in displayed units; 3 decimals without one), between 0 and 6."""
    name = metric_name(metric)
    if name in FRACTIONS:
        return 2
    if name in FIXED_DECIMALS:
        return FIXED_DECIMALS[name]
    if reference is None or not math.isfinite(reference) or reference == 0:
        return 3
    return min(6, max(0, SIGNIFICANT - 1 - math.floor(math.log10(abs(reference)))))


def display(metric: str, value: float | None) -> float:
    """``value`` in displayed units (NaN for None)."""
    return math.nan if value is None else scale(metric) * float(value)


def format_value(
    metric: str,
    value: float | None,
    *,
    reference: float | None = None,
    signed: bool = False,
    with_unit: bool = False,
) -> str:
    """A stored value of ``metric`` as text in displayed units (``0.8512`` acc -> ``85.12``; ``–`` for NaN/None).

    ``reference``: the stored value whose magnitude sets the decimals (default: ``value`` itself), so a std is
    written with its mean's decimals; ``signed``: always a sign (differences); ``with_unit``: append ``%`` (or
    ``pp`` with ``signed``) for fractions."""
    shown = display(metric, value)
    if math.isnan(shown):
        return MISSING
    digits = decimals(metric, display(metric, reference if reference is not None else value))
    text = format(shown, f"{'+' if signed else ''}.{digits}f")
    if with_unit and is_fraction(metric):
        text += " pp" if signed else "%"
    return text


def arrow(higher_is_better: bool) -> str:
    return "↑" if higher_is_better else "↓"


def label(metric: str, higher_is_better: bool, *, units: bool = True) -> str:
    """A column or axis label: ``acc ↑ (%)``, ``mae ↓``, ``r2 ↑``."""
    name = metric_name(metric)
    suffix = f" ({unit(name)})" if units and unit(name) else ""
    return f"{name} {arrow(higher_is_better)}{suffix}"


def phrase(metric: str) -> str:
    """The metric in words, for sentences and titles: ``accuracy``, ``MAE``, ``R²``."""
    name = metric_name(metric)
    return NAMES.get(name, name)
