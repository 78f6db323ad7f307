"""What a study found, read from its results store alone: a Markdown and a self-contained HTML report, and flat
tables (CSV or Parquet) for other tools. The report and export modules import pandas; this package imports them on
first use, so light modules such as :mod:`mtlab.report.units` can be imported from the training side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mtlab.pages.figures import FIGURE_FORMATS

if TYPE_CHECKING:
    from mtlab.report.export import export_tables
    from mtlab.report.render import build_report

__all__ = ["FIGURE_FORMATS", "build_report", "export_tables"]



def __getattr__(name: str) -> Any:
    if name == "build_report":
        from mtlab.report.render import build_report

        return build_report
    if name == "export_tables":
        from mtlab.report.export import export_tables

        return export_tables
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
