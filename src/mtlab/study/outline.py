"""What a study file says about itself - its name, description and runs per budget - read from the YAML alone.

Listing studies (``mtlab studies``) needs no run config: validating one assembles the whole schema (every registry,
torch included) and takes seconds, where a listing should answer at once. The counts follow :func:`expand`'s
rule - variants x grid points (a variant's own axes added to the study's) x seeds (the budget's, else the study's),
counting only the variants that run under the budget - and a test holds them equal to it for every built-in study.
A file that is not a valid study is found out when it is run, not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SEEDS = 3  # StudySpec.seeds' default


@dataclass(frozen=True)
class StudyOutline:
    name: str
    description: str
    runs: dict[str, int]  # budget -> how many runs the study expands into under it


def read_outline(path: str | Path) -> StudyOutline:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    seeds = raw.get("seeds", DEFAULT_SEEDS)
    runs = {}
    for budget, options in (raw.get("budgets") or {}).items():
        budget_seeds = (options or {}).get("seeds")
        points = sum(
            _points({**(raw.get("grid") or {}), **((v or {}).get("grid") or {})})
            for v in _variants(raw)
            if (v or {}).get("budgets") is None or budget in v["budgets"]  # a variant of other budgets only
        )
        runs[str(budget)] = points * _count(seeds if budget_seeds is None else budget_seeds)
    return StudyOutline(str(raw.get("name", Path(path).stem)), str(raw.get("description", "")), runs)


def _variants(raw: dict[str, Any]) -> list[dict[str, Any] | None]:
    return list((raw.get("variants") or {"": None}).values())


def _points(axes: dict[str, Any]) -> int:
    """Grid points of ``axes`` (key -> a list or a mapping of values, or a set's name such as ``all``)."""
    return math.prod(len(_set(key, values) if isinstance(values, str) else values) for key, values in axes.items())


def _set(key: str, name: str) -> list[Any] | range:
    """The values a set names (``loss.method: all``). ``all`` and ``all except ...`` are counted without importing
    the registry (torch): mtlab's own weighting methods are the modules of ``mtlab/weighting`` that register one,
    read as text. Any other set, or an installed plug-in method (an ``mtlab.weightings`` entry point), asks the
    registry itself. :func:`~mtlab.study.spec.expand` always asks the registry; a test holds the two equal."""
    head, _, left_out = (part.strip() for part in f"{name.strip()} ".partition(" except "))
    if key == "loss.method" and head == "all" and not entry_points(group="mtlab.weightings"):
        folder = Path(__file__).resolve().parents[1] / "weighting"
        builtin = sum(p.read_text(encoding="utf-8").count("\n@register_method\n") for p in folder.glob("*.py"))
        return range(builtin - len({m.strip() for m in left_out.split(",") if m.strip()}))
    from mtlab.study.spec import AXIS_SETS

    try:
        return AXIS_SETS[key](name)
    except (KeyError, ValueError):  # not a set: the run command says what is wrong with the file
        return []


def _count(seeds: int | list[int]) -> int:
    """A seed count (seeds 0..n-1) or an explicit list."""
    return seeds if isinstance(seeds, int) else len(seeds)
