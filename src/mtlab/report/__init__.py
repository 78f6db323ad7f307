"""What a study found, read from its results store alone: a Markdown and a self-contained HTML report, and flat
tables (CSV or Parquet) for other tools. Importing this package imports pandas; the CLI imports it on use."""

from mtlab.report.export import export_tables
from mtlab.report.render import build_report

__all__ = ["build_report", "export_tables"]
