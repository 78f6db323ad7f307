"""YAML in, validated :class:`RunConfig` out; every failure is one line that starts with the key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import ValidationError

from mtlab.config.schema import DataConfig, KeyedError, LossConfig, ModelConfig, RunConfig, Trunk
from mtlab.errors import ConfigError


def _tags(union: Any) -> list[str]:
    members = get_args(get_args(union)[0])
    return [tag for member in members for field in member.model_fields.values() for tag in _literals(field)]


def _literals(field: Any) -> tuple[str, ...]:
    return get_args(field.annotation) if get_origin(field.annotation) is Literal else ()


# Values that select the member of a tagged union; pydantic puts them in error locations, users never write them
# as keys.
_UNION_TAGS = {tag for union in (DataConfig, ModelConfig, Trunk, LossConfig) for tag in _tags(union)}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning a missing or binary file or a syntax error into a :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not a YAML text file (byte {e.start} is not UTF-8); pass the config file, not a binary"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(raw).__name__}")
    return raw


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[x, y]"]`` -> ``{"a.b": 1, "c": ["x", "y"]}`` (values parsed as YAML, else kept as text)."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like dotted.key=value")
        try:
            parsed[key] = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            parsed[key] = text
    return parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``dotted.key=value`` overrides applied (values parsed as YAML)."""
    raw = copy.deepcopy(raw)
    for key, value in parse_overrides(overrides).items():
        set_dotted(raw, key, value)
    return raw


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw[a][b][c] = value`` for key ``a.b.c``, creating mappings on the way."""
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            # A numeric part indexes a list: model.trunk.conv.0.filters=64.
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{'.'.join(parts[:i])}: has {len(node)} items, no item {part!r} (in {key})")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parts[:i])}: is a {type(node).__name__}, cannot set {key}")
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]


def parse_config(raw: dict[str, Any], base: Path | None = None) -> RunConfig:
    """Validate a raw mapping; raise :class:`ConfigError` naming every bad key (one line each). File paths in it
    (a table, a model file) are relative to ``base`` when given (the config file's directory)."""
    try:
        return RunConfig.model_validate(raw, context={"base": base} if base is not None else None)
    except ValidationError as e:
        raise ConfigError(format_error(e, raw)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    return parse_config(apply_overrides(read_yaml(path), overrides or []), base=Path(path).resolve().parent)


def format_error(error: ValidationError, raw: Any, prefix: str = "") -> str:
    """One line per problem, ``prefix + key.path: problem``, in the order pydantic found them (duplicates dropped).

    The lines are joined with newlines; the command line prints each as its own ``mtlab: error:`` line, so one
    edit of the file can fix every problem at once.
    """
    lines: list[str] = []
    for err in error.errors():
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, KeyedError):
            line = f"{prefix}{cause.path}: {cause.message}"
        else:
            path = _key_path(err["loc"], raw)
            if err["type"] == "union_tag_invalid":  # the bad value sits under the tag's key: data.dataset
                tag = str((err.get("ctx") or {}).get("discriminator", "")).strip("'")
                path = f"{path}.{tag}" if path and tag else path or tag
            line = f"{prefix}{path or '(top level)'}: {_message(err)}"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"unknown value {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"missing key {err.get('ctx', {}).get('discriminator', '')!s}".replace("'", "")
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if "input" in err and kind not in ("value_error", "assertion_error"):
        message += f" (got {err['input']!r})"
    return message


def _key_path(loc: tuple[Any, ...], raw: Any) -> str:
    """Render a pydantic location as ``a.b[0].c``, dropping the union tags pydantic inserts."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
            continue
        if isinstance(node, dict) and item not in node and item in _UNION_TAGS:
            continue  # pydantic's tag of the union member, not a key of the user's
        parts.append(f".{item}" if parts else str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)
