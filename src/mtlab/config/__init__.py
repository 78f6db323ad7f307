"""Run configuration: typed schema (:mod:`.schema`) and YAML loading with key-path errors (:mod:`.load`).

The names below are loaded on first use, so that :mod:`mtlab.config.base` (the base every option model shares,
weighting methods' included) can be imported without pulling in the whole run schema first.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RunConfig", "load_config", "parse_config"]


def __getattr__(name: str) -> Any:
    if name in ("load_config", "parse_config"):
        from mtlab.config import load

        return getattr(load, name)
    if name == "RunConfig":
        from mtlab.config.schema import RunConfig

        return RunConfig
    raise AttributeError(f"module 'mtlab.config' has no attribute {name!r}")
