"""Built-in studies, shipped as YAML package data in ``mtlab/studies`` and addressed by name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mtlab.builtin_files import builtin_yaml_files
from mtlab.errors import ConfigError, did_you_mean

if TYPE_CHECKING:  # a study spec validates run configs (torch): imported when a study is loaded, not listed
    from mtlab.study.spec import StudySpec


def builtin_study_paths() -> dict[str, Path]:
    """Study name -> its YAML file, for every study shipped with mtlab."""
    return builtin_yaml_files("studies")


def find_study(name_or_path: str) -> tuple[StudySpec, Path]:
    """A built-in study by name, or a study YAML by path, validated.

    Args:
        name_or_path: A built-in study's name (``mtlab studies`` lists them) or the path of a study file.

    Returns:
        The study spec and the file it was read from.

    Raises:
        ConfigError: No such study (with the closest built-in name), or a study whose spec or run configs are
            invalid (each line naming the file, line and key).

    Example:
        ```python
        from mtlab import find_study

        spec, path = find_study("fashion-mtl")
        spec.default_budget  # 'quick'
        ```
    """
    builtin = builtin_study_paths()
    if name_or_path in builtin:
        path = builtin[name_or_path]
    else:
        path = Path(name_or_path)
        if not path.exists():
            known = did_you_mean(name_or_path, builtin, f"built-in: {sorted(builtin)}", quote=False)
            raise ConfigError(f"{name_or_path}: no such study file and no built-in study of that name; {known}")
    from mtlab.study.spec import load_study_spec

    return load_study_spec(path), path
