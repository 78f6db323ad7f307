"""What defines a study directory's runs, and how a new ``mtlab run`` into it differs from that.

A study directory holds one study as one command defined it: the study (its name and spec), the budget, the
command-line overrides, and so the set of runs they expand to (each run's id is a hash of its resolved config).
Running it again with the same definition resumes. A command whose definition differs (another override, budget or
seed count, an edited spec) is refused with what differs (:func:`definition_change`), unless it asks to
``redefine`` the directory; the runs of the earlier definition then stay in the store, finished ones included, and
the store's ``superseded`` list says which definitions came before (:func:`superseded_entry`). A run the two
definitions share is the same run: it is not trained again.

Edits that change no run (the description, the control, the reference, a budget not used) are not a redefinition.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from mtlab.study.spec import RunSpec, StudySpec

MAX_LISTED = 4  # changed spec keys named in the message; the rest are counted


def as_json(value: Any) -> Any:
    """``value`` as the store holds it (JSON round trip: tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


def format_overrides(overrides: Mapping[str, Any] | None) -> str:
    """``train.epochs=2 optim.lr=0.01`` as typed on a command line (values as YAML flow, JSON for containers)."""
    if not overrides:
        return "none"
    return " ".join(f"{key}={_text(value)}" for key, value in overrides.items())


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def definition_change(
    info: Mapping[str, Any],
    stored: Mapping[str, str],
    spec: StudySpec,
    budget: str | None,
    overrides: Mapping[str, Any] | None,
    runs: list[RunSpec],
    first_config: Mapping[str, Any] | None = None,
) -> str | None:
    """What differs between a store's definition and a command's, in words; None when they are the same.

    ``info``: the store's study info (name, budget, overrides, spec); ``stored``: its current runs (id -> status);
    ``runs``: the command's expanded runs; ``first_config``: the stored first run's resolved config, to name what
    changed in the run configs when nothing the command says did. A store without runs (new, or one whose first
    driver stopped before it stored them) has no definition to differ from.
    """
    if not stored:
        return None
    new_ids = {r.run_id for r in runs}
    overrides = as_json(dict(overrides or {}))
    stored_overrides = info.get("overrides") or {}
    parts: list[str] = []
    if info.get("name") not in (None, spec.name):
        parts.append(f"study {spec.name} (stored: {info['name']})")
    if "budget" in info and info["budget"] != budget:  # (a store written by hand may not say)
        parts.append(f"budget {budget or 'default'} (stored: {info['budget'] or 'default'})")
    if "overrides" in info and overrides != stored_overrides:
        parts.append(f"overrides {_override_change(stored_overrides, overrides)}")
    if info.get("name") == spec.name and "spec" in info:
        changed = _changed_keys(_defining(info["spec"], budget), _defining(spec.model_dump(mode="json"), budget))
        if changed:
            listed = ", ".join(changed[:MAX_LISTED]) + (f" and {len(changed) - MAX_LISTED} more" if
                                                        len(changed) > MAX_LISTED else "")  # fmt: skip
            parts.append(f"the study spec's {listed}")
    if not parts and new_ids == set(stored):
        return None
    if not parts:  # same study, budget, overrides and spec, other run configs: what resolves them moved
        changed = _changed_keys(first_config or {}, runs[0].config.model_dump(mode="json")) if runs else []
        keys = f" ({', '.join(changed[:MAX_LISTED])}{' ...' if len(changed) > MAX_LISTED else ''})" if changed else ""
        parts.append(f"the resolved run configs{keys}: mtlab's defaults, or a path resolved from another directory")
    new = len(new_ids - set(stored))
    dropped = [r for r in stored if r not in new_ids]
    finished = sum(stored[r] == "done" for r in dropped)
    effect = f"{new} of its {len(new_ids)} runs are not in the store"
    if dropped:
        effect += f", and {len(dropped)} stored runs ({finished} finished) are not in it"
    return f"this command differs from the study stored there in {'; '.join(parts)}: {effect}"


def superseded_entry(info: Mapping[str, Any], stored: Mapping[str, str], new_ids: set[str]) -> dict[str, Any]:
    """The record of a definition a ``redefine`` replaces: its command, budget, overrides, spec and run counts."""
    dropped = [r for r in stored if r not in new_ids]
    return {
        "command": info.get("command") or [],
        "budget": info.get("budget"),
        "overrides": info.get("overrides") or {},
        "spec": info.get("spec"),
        "runs": len(stored),
        "done": sum(s == "done" for s in stored.values()),
        "kept": len(dropped),
        "kept_done": sum(stored[r] == "done" for r in dropped),
        "replaced": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _override_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    changes = []
    for key in dict.fromkeys([*after, *before]):
        if key not in before:
            changes.append(f"{key}={_text(after[key])} (stored: not set)")
        elif key not in after:
            changes.append(f"{key} not set (stored: {key}={_text(before[key])})")
        elif before[key] != after[key]:
            changes.append(f"{key}={_text(after[key])} (stored: {_text(before[key])})")
    return ", ".join(changes)


def _defining(spec: Mapping[str, Any], budget: str | None) -> dict[str, Any]:
    """The parts of a spec (as JSON) that decide its runs under ``budget``: base, grid, the variants that run under
    it (their ``budgets`` lists aside), seeds, the budget's own settings."""
    chosen = (spec.get("budgets") or {}).get(budget) if budget else None
    name = budget or spec.get("default_budget")
    variants = {
        variant: {key: value for key, value in body.items() if key != "budgets"}
        for variant, body in (spec.get("variants") or {}).items()
        if not isinstance(body, dict) or body.get("budgets") is None or name in body["budgets"]
    }
    return {
        "base": spec.get("base"),
        "grid": spec.get("grid") or {},
        "variants": variants,
        "seeds": spec.get("seeds"),
        **({f"budgets.{budget}": chosen} if chosen is not None else {}),
    }


def _changed_keys(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (a scalar change shows its new and stored values)."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = list(dict.fromkeys([*before, *after]))
        found: list[str] = []
        for key in keys:
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in before:
                found.append(f"{path} (added)")
            elif key not in after:
                found.append(f"{path} (removed)")
            else:
                found += _changed_keys(before[key], after[key], path)
        return found
    if before == after:
        return []
    if _scalar(before) and _scalar(after):
        return [f"{prefix} {_text(after)} (stored: {_text(before)})"]
    return [prefix]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
