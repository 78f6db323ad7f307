"""Where an analysis command writes: PNG figures, the numbers behind them (NPZ/CSV/JSON) and one page.

The page is built from the page toolkit's blocks and writers (:mod:`mtlab.pages`), so figures are embedded in the
HTML as data URIs and the page needs nothing beside it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlab import atomic
from mtlab.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mtlab.pages.blocks import Block

Options = Any
"""A command's parsed options: an object whose attributes are named as the command's flags (``run``, ``out``,
``task``, ``layer``, ...). :mod:`mtlab.cli.analyze` parses them; a script may pass a ``SimpleNamespace``."""


class AnalysisOutput:
    """An analysis command's output directory: PNG figures, the numbers behind them, and ``report.html`` / ``.md``.

    The page is built from the page toolkit's blocks and writers (:mod:`mtlab.pages`), so figures are embedded
    in the HTML as data URIs and the page needs nothing beside it.
    """

    def __init__(self, directory: Path, title: str):
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise ConfigError(f"--out {self.directory}: exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.title = title

    def figure(self, fig: Figure, name: str, title: str, caption: str) -> Block:
        """Save ``fig`` as ``<name>.png`` (no version stamp, so equal pictures are equal bytes); a page block."""
        from mtlab.pages.figures import save_figure

        return save_figure(fig, self.directory / f"{name}.png", title, caption)

    def arrays(self, name: str, arrays: dict[str, np.ndarray]) -> Path:
        """Every array behind a figure, exactly, as ``<name>.npz``."""
        path = self.directory / f"{name}.npz"
        with atomic.replacing(path) as temporary:
            np.savez_compressed(temporary, **arrays)
        return path

    def csv(self, name: str, rows: list[dict[str, Any]]) -> Path:
        path = self.directory / f"{name}.csv"
        columns = list(dict.fromkeys(k for row in rows for k in row))
        with atomic.replacing(path) as temporary, temporary.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        return path

    def json(self, name: str, data: Any) -> Path:
        path = self.directory / f"{name}.json"
        atomic.write_text(path, json.dumps(data, indent=2))
        return path

    def page(self, blocks: list[Block]) -> Path:
        """Write ``report.md`` and the self-contained ``report.html``; return the HTML's path."""
        from mtlab.pages.render import to_html, to_markdown

        atomic.write_text(self.directory / "report.md", to_markdown(blocks, self.directory))
        path = self.directory / "report.html"
        atomic.write_text(path, to_html(blocks, title=self.title))
        return path


def output_directory(args: Options, run_dir: Path, command: str) -> Path:
    """``--out``, or ``<run_dir>/analysis/<command>``."""
    return args.out if args.out is not None else Path(run_dir) / "analysis" / command
