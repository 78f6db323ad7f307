"""The formats ``mtlab export`` writes, as one table: a name, what it writes, and the function that writes it.

The writers live in modules that import pandas (and more: pyarrow for parquet); this table imports nothing, so the
command line can list the formats without loading them. A writer takes the study directory and the output directory,
which it creates once it has read what it writes (a damaged store writes nothing), and returns the paths it wrote; a
package it needs is named in ``requires`` and checked before anything else. Adding a format is one row here and
one writer function.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Writer = Callable[[Path, Path], list[Path]]


@dataclass(frozen=True)
class ExportFormat:
    writer: str  # "module:function", imported when the format is asked for
    writes: str  # for --help
    requires: str = ""  # an optional package the writer needs (its import name = its pip name), checked first

    def load(self) -> Writer:
        module, function = self.writer.split(":")
        return getattr(importlib.import_module(module), function)


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "csv": ExportFormat("mtlab.report.export:write_csv", "runs.csv and epochs.csv"),
    "parquet": ExportFormat(
        "mtlab.report.export:write_parquet", "runs.parquet and epochs.parquet (needs pyarrow)", requires="pyarrow"
    ),
    "latex": ExportFormat(
        "mtlab.report.latex:write_latex",
        "the report's main tables as booktabs LaTeX, a .tex per table, and tables.tex that compiles them",
    ),
}
