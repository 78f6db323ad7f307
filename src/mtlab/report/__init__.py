"""What a study found, read from its results store alone: a Markdown and a self-contained HTML report, and flat
tables (CSV or Parquet) for other tools. The report and export modules import pandas; this package imports them on
first use, so light modules such as :mod:`mtlab.report.units` can be imported from the training side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtlab.report.export import export_tables
    from mtlab.report.render import build_report

__all__ = ["FIGURE_FORMATS", "build_report", "export_tables"]

FIGURE_FORMATS = ("png", "svg", "pdf")
"""Formats of the report's figures (``--figure-format``): png (default), svg (embedded in the HTML as vector), pdf
(for papers; written beside a PNG, which the HTML embeds)."""


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from mtlab.report.render import build_report

        return build_report
    if name == "export_tables":
        from mtlab.report.export import export_tables

        return export_tables
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
