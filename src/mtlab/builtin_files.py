"""YAML files shipped as package data (built-in studies, searches), addressed by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def builtin_yaml_files(folder: str) -> dict[str, Path]:
    """Name (file stem) -> path of every ``*.yaml`` in the package folder ``mtlab/<folder>``, sorted by name."""
    files = resources.files("mtlab") / folder
    return {
        Path(p.name).stem: Path(str(p))
        for p in sorted(files.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".yaml")
    }
