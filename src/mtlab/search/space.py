"""From a search spec and an Optuna trial to a run config, and from a run config to the architecture it describes.

Optuna parameter names: ``depth``; ``width1`` ... ``widthN`` (MLP) or ``filters1`` / ``kernel1`` ... (CNN), drawn
only up to the trial's depth (a conditional space, which TPE handles per parameter); ``lr``; ``candidate``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mtlab.config.load import parse_config, set_dotted
from mtlab.config.schema import RunConfig, model_kind

if TYPE_CHECKING:
    import optuna

    from mtlab.search.spec import CnnSpace, IntRange, SearchSpec


def trial_config(spec: SearchSpec, trial: optuna.Trial) -> RunConfig:
    """The run config of ``trial``: the base config with the architecture (and learning rate) the trial draws."""
    if spec.candidates is not None:
        name = trial.suggest_categorical("candidate", list(spec.candidates))
        return parse_config(_candidate_raw(spec, name))
    space = spec.space
    depth = _suggest_int(trial, "depth", space.depth)
    if space.type == "mlp":
        widths = [_suggest_int(trial, f"width{i + 1}", space.width) for i in range(depth)]
        trunk = _mlp_trunk(widths)
    else:
        filters = [_suggest_int(trial, f"filters{i + 1}", space.filters) for i in range(depth)]
        kernels = [int(trial.suggest_categorical(f"kernel{i + 1}", space.kernel)) for i in range(depth)]
        trunk = _cnn_trunk(space, filters, kernels)
    lr = None if space.lr is None else trial.suggest_float("lr", space.lr.low, space.lr.high, log=space.lr.log)
    return parse_config(_raw(spec, trunk, lr))


def fixed_config(spec: SearchSpec) -> RunConfig:
    """The first architecture of the space: the first candidate, or the shallowest and narrowest network."""
    return parse_config(extreme_configs(spec)[0][1])


def extreme_configs(spec: SearchSpec) -> list[tuple[str, dict[str, Any]]]:
    """Raw configs at the corners of the space (every candidate; smallest and largest networks), for validation."""
    if spec.candidates is not None:
        return [(f"candidates.{name}", _candidate_raw(spec, name)) for name in spec.candidates]
    space = spec.space
    small, large = space.depth.low, space.depth.high
    if space.type == "mlp":
        trunks = [_mlp_trunk([space.width.low] * small), _mlp_trunk([space.width.high] * large)]
    else:
        # With 'valid' padding the largest kernel shrinks the image most; the deepest stack is checked with it.
        trunks = [
            _cnn_trunk(space, [space.filters.low] * small, [min(space.kernel)] * small),
            _cnn_trunk(space, [space.filters.high] * large, [max(space.kernel)] * large),
        ]
    lr = None if space.lr is None else space.lr.low
    return [("smallest architecture", _raw(spec, trunks[0], lr)), ("largest architecture", _raw(spec, trunks[1], lr))]


def _suggest_int(trial: optuna.Trial, name: str, values: IntRange) -> int:
    if values.log:
        return trial.suggest_int(name, values.low, values.high, log=True)
    return trial.suggest_int(name, values.low, values.high, step=values.step)


def _mlp_trunk(widths: list[int]) -> dict[str, Any]:
    return {"type": "mlp", "widths": widths}


def _cnn_trunk(space: CnnSpace, filters: list[int], kernels: list[int]) -> dict[str, Any]:
    conv = [
        {"filters": f, "kernel": k, "padding": space.padding, "pool": space.pool if i < space.pooled_layers else 1}
        for i, (f, k) in enumerate(zip(filters, kernels, strict=True))
    ]
    return {"type": "cnn", "conv": conv}


def _raw(spec: SearchSpec, trunk: dict[str, Any], lr: float | None) -> dict[str, Any]:
    raw = copy.deepcopy(spec.base)
    set_dotted(raw, f"model.{model_kind(raw.get('model', {}).get('kind', 'multitask')).trunk_field}", trunk)
    if lr is not None:
        set_dotted(raw, "optim.lr", lr)
    raw["seed"] = spec.seed
    return raw


def _candidate_raw(spec: SearchSpec, name: str) -> dict[str, Any]:
    raw = copy.deepcopy(spec.base)
    for key, value in spec.candidates[name].items():
        set_dotted(raw, key, copy.deepcopy(value))
    raw["seed"] = spec.seed
    return raw


@dataclass(frozen=True)
class Architecture:
    """What the result table shows of a network: ``depth`` (hidden dense layers of an MLP trunk, convolutions of a
    CNN trunk), ``widths`` (units or filters per layer) and a readable ``label`` (``512-256``, ``32k4-64k3``)."""

    kind: str
    depth: int
    widths: tuple[int, ...]
    label: str

    @property
    def max_width(self) -> int:
        return max(self.widths, default=0)


def describe(config: RunConfig) -> Architecture:
    """The architecture of a multi-task model's trunk (the head's hidden layers are not counted)."""
    trunk = config.model.trunk_configs()[0]
    widths, label = trunk.layer_widths()
    return Architecture(trunk.type, len(widths), tuple(widths), label)
