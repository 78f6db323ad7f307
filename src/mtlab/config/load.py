"""YAML in, validated :class:`RunConfig` out; every failure is one line that says where the bad value was written
and how to fix it.

A line starts with where the value came from - ``tiny.yaml:7`` for a key of a YAML file (read with its node marks,
:func:`read_yaml_file`), ``command line override train.epoch=2`` for an override - then the key path, then the
problem; a mistyped name comes with the closest valid one (``train.epoch: unknown key; did you mean train.epochs?``)
and an option of another weighting method, model kind or dataset names its owner (:func:`format_error`).
"""

from __future__ import annotations

import copy
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from mtlab.config.schema import KeyedError, LossConfig, RunConfig, shared_unions
from mtlab.errors import ConfigError, closest, did_you_mean


def _tags(union: Any) -> list[str]:
    members = get_args(get_args(union)[0])
    return [tag for member in members for field in member.model_fields.values() for tag in _literals(field)]


def _literals(field: Any) -> tuple[str, ...]:
    return get_args(field.annotation) if get_origin(field.annotation) is Literal else ()


def _union_tags() -> set[str]:
    """Values that select the member of a tagged union; pydantic puts them in error locations, users never write
    them as keys."""
    return {tag for union in (*shared_unions().values(), LossConfig) for tag in _tags(union)}


COMMAND_LINE = "command line override"
"""How the command line labels its ``KEY=VALUE`` overrides (``command line override train.epoch=2: ...``)."""

Parts = tuple[str | int, ...]
"""A key path split into its parts: mapping keys, and list indices (as ints, or as digit strings)."""


def key_parts(path: str) -> tuple[str, ...]:
    """``model.reuse[0].source`` (an error's path) or ``model.reuse.0.source`` (an override's key) ->
    ``("model", "reuse", "0", "source")``."""
    return tuple(part for part in path.replace("[", ".").replace("]", "").split(".") if part)


@dataclass(frozen=True)
class YamlFile:
    """A YAML file as the user named it, with its node tree, to tell on which line a key was written."""

    name: str
    root: yaml.Node | None

    def line(self, parts: Parts) -> int | None:
        """The 1-based line of the key at ``parts``, or of the nearest enclosing key the file has; None if the
        file has none of them. A str part is a mapping key (or, all digits, a list index); an int part is the
        position of an entry, in a list or a mapping alike (a study axis given either way)."""
        node, line = self.root, None
        for part in parts:
            if isinstance(node, yaml.MappingNode):
                if isinstance(part, int):
                    entries = node.value[part : part + 1] if 0 <= part < len(node.value) else []
                else:
                    entries = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
                if not entries:
                    break
                key, node = entries[-1]  # a key written twice: YAML keeps the last
                line = key.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode):
                index = part if isinstance(part, int) else int(part) if part.isdigit() else -1
                if not 0 <= index < len(node.value):
                    break
                node = node.value[index]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def where(self, parts: Parts) -> str:
        """``name:line`` of the key at ``parts`` (see :meth:`line`), or the bare name."""
        line = self.line(parts)
        return f"{self.name}:{line}" if line is not None else self.name


def read_yaml_file(path: str | Path) -> tuple[dict[str, Any], YamlFile]:
    """Read a YAML mapping and its node tree (for line numbers), turning a missing or binary file or a syntax error
    into a :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not a YAML text file (byte {e.start} is not UTF-8); pass the config file, not a binary"
        ) from None
    try:  # yaml.safe_load's steps, keeping the node tree it builds the values from
        loader = yaml.SafeLoader(text)  # checks the characters already
        try:
            root = loader.get_single_node()
            raw = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: {_yaml_problem(e)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(raw).__name__}")
    return raw, YamlFile(str(path), root)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """``line 3 invalid YAML (expected ',' or '}', but got ':'), in the flow mapping that starts on line 1``: where
    YAML found the problem, and where what it was reading began (``context_mark``: an unclosed brace, quote or
    bracket is seen only on a later line)."""
    mark, context, start = (getattr(error, name, None) for name in ("problem_mark", "context", "context_mark"))
    where = f"line {mark.line + 1} " if mark is not None else ""
    text = f"{where}invalid YAML ({getattr(error, 'problem', None) or error})"
    if start is not None and (mark is None or start.line != mark.line):
        what = str(context or "").removeprefix("while parsing ").removeprefix("while scanning ").removeprefix("a ")
        text += f", in the {what or 'block'} that starts on line {start.line + 1}"
    return text


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (see :func:`read_yaml_file`)."""
    return read_yaml_file(path)[0]


@dataclass(frozen=True)
class Origin:
    """Where a value of a config was written, which starts the lines of its errors.

    ``label``: ``tiny.yaml:7``, ``command line override train.epoch=2`` (None: say nothing of where). ``key``: the
    key an override sets; an error at exactly that key drops the key path, which the label already shows.
    ``alone``: the label says all there is to say; the line has no context (no study variant) after it.
    """

    label: str | None
    key: tuple[str, ...] | None = None
    alone: bool = False


class Origins:
    """Who wrote each key of a raw run config: the overrides, the last one first, then a YAML file (the keys of
    the file under ``under``, e.g. a study's ``base``)."""

    def __init__(self, file: YamlFile | None = None, under: Parts = ()):
        self.file = file
        self.under = under
        self._overrides: list[tuple[tuple[str, ...], Origin]] = []
        self.nulls: set[tuple[str, ...]] = set()
        """Keys an override set to null: where the key takes no null, that unsets it (:func:`validate_run`)."""

    def override(self, key: str, origin: Origin, value: Any = ...) -> None:
        """Record that ``key`` was set (after everything recorded before) to ``value`` by what ``origin`` says."""
        self._overrides.append((key_parts(key), origin))
        parts = key_parts(key)
        if value is None:
            self.nulls.add(parts)
        else:
            self.nulls = {null for null in self.nulls if null[: len(parts)] != parts}

    def of(self, path: str) -> Origin | None:
        """The origin of the value at ``path``: the last override that set it, a key in it or a section holding it,
        else its line in the file."""
        parts = key_parts(path)
        for key, origin in reversed(self._overrides):
            shared = min(len(key), len(parts))
            if parts and key[:shared] == parts[:shared]:
                return origin
        if self.file is not None:
            return Origin(self.file.where((*self.under, *parts)))
        return None


class Overrides(dict[str, Any]):
    """``dotted.key -> value`` overrides that remember how each was written (``labels``: key -> ``command line
    override train.epoch=2``), so that their errors blame them."""

    def __init__(self, items: Iterable[tuple[str, Any]] = (), labels: dict[str, str] | None = None):
        super().__init__(items)
        self.labels: dict[str, str] = dict(labels or {})

    def origin(self, key: str) -> Origin:
        """The origin of ``key``'s value: its label, shown alone (a command-line value has no study variant)."""
        label = self.labels.get(key)
        return Origin(label, key_parts(key), alone=label is not None)


def parse_overrides(items: list[str], source: str | None = None) -> Overrides:
    """``["a.b=1", "c=[x, y]"]`` -> ``{"a.b": 1, "c": ["x", "y"]}`` (values parsed as YAML, else kept as text).

    With a ``source`` (``"command line override"``), each key's label is ``source`` and the item as written."""
    parsed = Overrides()
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like dotted.key=value")
        try:
            parsed[key] = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            parsed[key] = text
        if source is not None:
            parsed.labels[key] = f"{source} {item}"
    return parsed


def apply_overrides(
    raw: dict[str, Any], overrides: list[str] | Overrides, origins: Origins | None = None
) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``dotted.key=value`` overrides applied (values parsed as YAML); each is
    recorded in ``origins`` when given, and a key that cannot be set is blamed on its override's label."""
    raw = copy.deepcopy(raw)
    parsed = overrides if isinstance(overrides, Overrides) else parse_overrides(overrides)
    for key, value in parsed.items():
        origin = parsed.origin(key)
        try:
            set_dotted(raw, key, value)
        except ConfigError as e:
            if origin.label is None:
                raise
            raise ConfigError(f"{origin.label}: {e}") from None
        if origins is not None:
            origins.override(key, origin, value)
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


def parse_config(raw: dict[str, Any], base: Path | None = None, origins: Origins | None = None) -> RunConfig:
    """Validate a raw run-config mapping into a ``mtlab.config.schema.RunConfig``, every default filled in.

    Args:
        raw: The config as YAML would load it: sections ``data``, ``tasks``, ``model``, ``loss``, ``optim``,
            ``train``.
        base: The directory file paths in it (a table, a model file) are relative to; None: the working directory.
        origins: Where each key was written (a file and line, an override), to start each error line with.

    Returns:
        The validated run config.

    Raises:
        ConfigError: Naming every bad key, one line each (at most 10, then a count), with the closest valid name
            for a mistyped one and an example value for a missing one.

    Example:
        ```python
        from mtlab import parse_config

        config = parse_config({
            "data": {"dataset": "fashion-mnist-sample"},
            "model": {"trunk": {"type": "mlp", "widths": [64]}},
            "train": {"epochs": 1},
        })
        config.task_names  # ['item', 'group']
        ```
    """
    return validate_run(raw, base, origins)


def validate_run(raw: dict[str, Any], base: Path | None, origins: Origins | None, prefix: str = "") -> RunConfig:
    """:class:`RunConfig` of ``raw`` (see :func:`parse_config`; ``prefix``: context for :func:`format_error`).

    A key an override set to null (``loss.weights=null``) where the key takes no null is unset instead: it takes
    its default, as if the file had never written it."""
    context = {"base": base} if base is not None else None
    try:
        return RunConfig.model_validate(raw, context=context)
    except ValidationError as e:
        unset = _refused_nulls(e, raw, origins)
        if not unset:
            raise ConfigError(format_error(e, raw, prefix=prefix, origins=origins)) from None
    raw = copy.deepcopy(raw)
    for parts in unset:
        node = raw
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[parts[-1]]
    try:
        return RunConfig.model_validate(raw, context=context)
    except ValidationError as e:
        raise ConfigError(format_error(e, raw, prefix=prefix, origins=origins)) from None


def _refused_nulls(error: ValidationError, raw: dict[str, Any], origins: Origins | None) -> list[tuple[str, ...]]:
    """The keys of mappings that an override set to null and that an error of ``error`` refuses."""
    if origins is None or not origins.nulls:
        return []
    found: list[tuple[str, ...]] = []
    for err in error.errors():
        parts = key_parts(_key_path(err["loc"], raw))
        for null in origins.nulls:
            if parts[: len(null)] == null and null not in found and _holder(raw, null) is not None:
                found.append(null)
    return found


def _holder(raw: Any, parts: tuple[str, ...]) -> dict[str, Any] | None:
    """The mapping that holds the key at ``parts`` (with that key set to null), else None."""
    node = raw
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node if isinstance(node, dict) and parts[-1] in node and node[parts[-1]] is None else None


def load_config(path: str | Path, overrides: list[str] | None = None, overrides_from: str | None = None) -> RunConfig:
    """The run config of a YAML file, with ``dotted.key=value`` overrides applied on top (as ``mtlab train`` does).

    Args:
        path: The YAML file; file paths in it are relative to its directory.
        overrides: ``KEY=VALUE`` strings, values read as YAML (``train.epochs=2``, ``loss.weights={item: 2}``).
        overrides_from: How an error names an override (``"command line override"``).

    Returns:
        The validated run config.

    Raises:
        ConfigError: A file that is not a YAML mapping, or every bad key, each line naming the file and line of the
            key, or the override that set it.

    Example:
        ```python
        from mtlab import load_config

        config = load_config("examples/fashion-mtl-sample.yaml", ["train.epochs=1", "loss.method=pcgrad"])
        config.loss.method  # 'pcgrad'
        ```
    """
    raw, file = read_yaml_file(path)
    origins = Origins(file)
    raw = apply_overrides(raw, parse_overrides(overrides or [], overrides_from), origins)
    return parse_config(raw, base=Path(path).resolve().parent, origins=origins)


def format_error(
    error: ValidationError,
    raw: Any,
    prefix: str = "",
    *,
    model: type[BaseModel] = RunConfig,
    origins: Origins | None = None,
) -> str:
    """One line per problem, ``[origin: ][prefix]key.path: problem``, in the order pydantic found them (duplicates
    dropped). ``model`` is the class validated (for the keys a section offers); ``origins`` tells where each key was
    written (a file's line, an override); ``prefix`` is context (a study variant) that an override from the
    command line does without.

    The lines are joined with newlines; the command line prints each as its own ``mtlab: error:`` line, so one
    edit of the file can fix every problem at once.
    """
    lines: list[str] = []
    for err in error.errors():
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, KeyedError):
            path, message = cause.path, cause.message
        else:
            path = _key_path(err["loc"], raw)
            if err["type"] == "union_tag_invalid":  # the bad value sits under the tag's key: data.dataset
                tag = str((err.get("ctx") or {}).get("discriminator", "")).strip("'")
                path = f"{path}.{tag}" if path and tag else path or tag
            message = _message(err, model, path)
        line = _line(origins.of(path) if origins is not None else None, prefix, path, message)
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


def _line(origin: Origin | None, prefix: str, path: str, message: str) -> str:
    if origin is None:
        return f"{prefix}{path or '(top level)'}: {message}"
    head = f"{origin.label}: " if origin.label is not None else ""
    if not origin.alone:
        head += prefix
    if origin.label is not None and origin.key == key_parts(path):
        return f"{head}{message}"  # the label names the key: command line override train.epoch=2: unknown key
    return f"{head}{path or '(top level)'}: {message}"


# ------------------------------------------------------------------- what the model offers at an error's location


@dataclass(frozen=True)
class _Section:
    """The options class at a location, and, when a tagged union chose it, that union: its tag field, the tag
    value that chose it and every member (the weighting methods, model kinds, datasets, trunk types)."""

    model: type[BaseModel]
    tag_field: str | None = None
    tag: str | None = None
    members: tuple[type[BaseModel], ...] = ()


def _union_members(annotation: Any, tag_field: str | None = None) -> tuple[tuple[type[BaseModel], ...], str | None]:
    """The model classes an annotation allows (a model, an optional one, a tagged union) and the union's tag field
    (``tag_field``: the discriminator pydantic moved from the annotation to the field)."""
    while get_origin(annotation) is Annotated:
        annotation, *metadata = get_args(annotation)
        for meta in metadata:
            if isinstance(getattr(meta, "discriminator", None), str):
                tag_field = meta.discriminator
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return (annotation,), None
    if get_origin(annotation) in (Union, types.UnionType):
        members: tuple[type[BaseModel], ...] = ()
        for arg in get_args(annotation):  # an optional tagged union nests the union (and its tag) in the option
            inner, inner_tag = _union_members(arg)
            members += inner
            tag_field = tag_field or inner_tag
        return members, tag_field if members else None
    return (), None


def _tag_values(member: type[BaseModel], tag_field: str | None) -> tuple[str, ...]:
    field = member.model_fields.get(tag_field) if tag_field else None
    return _literals(field) if field is not None else ()


def _walk(model: type[BaseModel], loc: Sequence[Any]) -> tuple[Any, str | None, _Section | None]:
    """Follow a pydantic location from ``model``: the annotation reached, its tag field if it is a tagged union,
    and, when the last step chose a member of a tagged union, that member's section. (None, None, None) if the
    location leaves the schema."""
    annotation: Any = model
    discriminator: str | None = None
    section: _Section | None = None
    for item in loc:
        members, tag_field = _union_members(annotation, discriminator)
        if len(members) > 1 or (members and tag_field):
            # pydantic names the member of a tagged union by its tag value (of an untagged one, by its class)
            chosen = next((m for m in members if item in _tag_values(m, tag_field) or item == m.__name__), None)
            if chosen is None:
                return None, None, None
            annotation, discriminator, section = chosen, None, _Section(chosen, tag_field, str(item), members)
        elif members:
            field = members[0].model_fields.get(item) if isinstance(item, str) else None
            if field is None:
                return None, None, None
            annotation, section = field.annotation, None
            discriminator = field.discriminator if isinstance(field.discriminator, str) else None
        elif get_origin(annotation) in (list, tuple, Sequence) and isinstance(item, int):
            annotation, discriminator, section = (get_args(annotation) or (Any,))[0], None, None
        elif get_origin(annotation) is dict and isinstance(item, str):
            annotation, discriminator, section = (get_args(annotation) or (Any, Any))[1], None, None
        else:
            return None, None, None
    return annotation, discriminator, section


def _section_at(model: type[BaseModel], loc: Sequence[Any]) -> _Section | None:
    """The options section that holds the key ``loc[-1]``."""
    annotation, discriminator, section = _walk(model, loc[:-1])
    members, tag_field = _union_members(annotation, discriminator)
    if len(members) == 1 and not tag_field:
        return section or _Section(members[0])  # the union that chose it, if one did
    return None


def _unknown_key(err: dict[str, Any], model: type[BaseModel], path: str) -> str:
    key = err["loc"][-1]
    section = _section_at(model, err["loc"])
    if section is None or not isinstance(key, str):
        return "unknown key"
    if section.tag is not None:
        owners = [
            tag
            for member in section.members
            if member is not section.model and key in member.model_fields
            for tag in _tag_values(member, section.tag_field)
        ]
        if owners:
            own = [f for f in section.model.model_fields if f != section.tag_field]
            return (
                f"not an option of {section.tag} (it belongs to {_and(owners)}); "
                f"{section.tag} takes: {', '.join(own) or 'no options'}"
            )
    match = closest(key, section.model.model_fields)
    return f"unknown key; did you mean {path[: len(path) - len(key)]}{match}?" if match else "unknown key"


def _missing_key(err: dict[str, Any], model: type[BaseModel]) -> str:
    """``required key is missing; for example conv: [{filters: 16, kernel: 3, pool: 2}]``: the key with a value its
    options give as an example (a field's ``examples``, or an options section built from its required keys')."""
    key = err["loc"][-1]
    section = _section_at(model, err["loc"])
    field = section.model.model_fields.get(key) if section is not None and isinstance(key, str) else None
    example = _field_example(field) if field is not None else None
    if example is None:
        return "required key is missing"
    return f"required key is missing; for example {key}: {_flow(example)}"


def _field_example(field: Any, depth: int = 0) -> Any:
    """A value for ``field``: its first ``examples`` entry, else (for an options section) the section's required keys
    with theirs, the tag of a tagged union's first member included; None when there is none to give."""
    if field.examples:
        return field.examples[0]
    members, tag_field = _union_members(field.annotation, field.discriminator if isinstance(field.discriminator, str)
                                        else None)  # fmt: skip
    if not members or depth > 3:
        return None
    member = members[0]
    example: dict[str, Any] = {}
    tags = _tag_values(member, tag_field)
    if tag_field and tags:
        example[tag_field] = tags[0]
    for name, inner in member.model_fields.items():
        if inner.is_required() and name != tag_field:
            value = _field_example(inner, depth + 1)
            if value is None:
                return None
            example[name] = value
    return example


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style (``{type: cnn, conv: [{filters: 16}]}``)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000)
    return text.strip().removesuffix("...").strip()  # a scalar document ends with "..."


def _and(names: list[str], most: int = 4) -> str:
    if len(names) > most:
        return f"{', '.join(names[: most - 1])} and {len(names) - most + 1} others"
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _unknown_tag(err: dict[str, Any], model: type[BaseModel]) -> str:
    ctx = err.get("ctx", {})
    members, tag_field = _union_members(*_walk(model, err["loc"])[:2])
    tags = [tag for member in members for tag in _tag_values(member, tag_field)]
    listing = f"expected one of {ctx.get('expected_tags')}"
    return f"unknown value {ctx.get('tag')!r}; {did_you_mean(ctx.get('tag'), tags, listing)}"


def _message(err: dict[str, Any], model: type[BaseModel], path: str) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_key(err, model, path)
    if kind == "missing":
        return _missing_key(err, model)
    if kind == "union_tag_invalid":
        return _unknown_tag(err, model)
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
        if isinstance(node, dict) and item not in node and item in _union_tags():
            continue  # pydantic's tag of the union member, not a key of the user's
        parts.append(f".{item}" if parts else str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)
