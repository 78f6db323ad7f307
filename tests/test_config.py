"""Run configs: defaults, overrides, and one-line errors that name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtlab.config import load_config, parse_config
from mtlab.config.load import apply_overrides
from mtlab.errors import ConfigError

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))

BASE = {
    "data": {"dataset": "fashion-mnist-sample"},
    "model": {"trunk": {"type": "cnn", "conv": [{"filters": 8, "pool": 2}]}, "head": {"widths": [16, 8]}},
}


def error_for(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(apply_overrides(BASE, overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_shipped_example_is_valid(path):
    config = load_config(path)
    assert config.task_names


def test_defaults_fill_everything():
    config = parse_config(BASE)
    assert config.model.kind == "multitask"
    assert config.task_names == ["item", "group"]
    assert config.data.groups == {"shoes": [5, 7, 9], "gendered": [3, 6, 8], "unisex": [0, 1, 2, 4]}
    assert config.optim.lr == 1e-3
    assert config.train.early_stopping is None


def test_overrides_parse_yaml_values_and_index_lists():
    config = parse_config(apply_overrides(BASE, ["optim.lr=5e-4", "model.trunk.conv.0.filters=4", "tasks=[item]"]))
    assert config.optim.lr == 5e-4
    assert config.model.trunk.conv[0].filters == 4
    assert config.task_names == ["item"]


def test_reuse_shorthand_and_none():
    edges = parse_config(apply_overrides(BASE, ["model.reuse=group->item"])).model.reuse
    assert (edges[0].source, edges[0].target, edges[0].at, edges[0].stop_gradient) == ("group", "item", None, False)
    assert parse_config(apply_overrides(BASE, ["model.reuse=none"])).model.reuse == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.colour=1"], "data.colour: unknown key"),
        (["optim.lr=-1"], "optim.lr: Input should be greater than 0"),
        (["train.epochs=many"], "train.epochs: Input should be a valid integer"),
        (["data.dataset=cifar10"], "data.dataset: unknown value 'cifar10'"),
        (["model.trunk.type=transformer"], "model.trunk.type: unknown value 'transformer'"),
        (["model.trunk.conv.0.filters=0"], "model.trunk.conv[0].filters: Input should be greater than 0"),
        (["tasks=[item, colour]"], "tasks[1]: unknown task 'colour'"),
        (["loss.weights.colour=1"], "loss.weights.colour: unknown task"),
        (["loss.weights.item=-0.5"], "loss.weights.item: Input should be greater than or equal to 0"),
        (["loss.weights={item: 0, group: 0}"], "loss.weights: every trained task has weight 0"),
        (["model.reuse=colour->item"], "model.reuse[0].source: unknown task 'colour'"),
        (["model.reuse=item->item"], "model.reuse[0]: a task cannot reuse its own labels"),
        (["model.reuse=[item->group, group->item]"], "model.reuse: edges form a cycle"),
        (["model.reuse=[{source: group, target: item, at: 3}]"], "model.reuse[0].at: 3 > the 2 hidden layers"),
        (["model.heads.colour={widths: [4]}"], "model.heads.colour: unknown task"),
        (["data.groups={a: [0, 1], b: [2]}"], "data.groups: groups must place every item class 0-9"),
        (["data.val_fraction=1.5"], "data.val_fraction: Input should be less than 1"),
        (["train.early_stopping={metric: val.colour.acc}"], "train.early_stopping.metric: unknown task 'colour'"),
        (["train.early_stopping={metric: test.loss}"], "train.early_stopping.metric: 'test.loss' is not"),
        (["data.val_fraction=0", "train.early_stopping={}"], "train.early_stopping: needs a validation split"),
        (["model={kind: pairs, branch: {type: mlp, widths: [4]}}"], "model.kind: 'pairs' models need"),
        (["model.trunk.conv.0.stride=2"], "model.trunk.conv[0]: padding 'same' needs stride 1"),
    ],
)
def test_bad_values_name_their_key(overrides, expected):
    assert error_for(overrides).startswith(expected)


def test_missing_key_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"^model: required key is missing"):
        parse_config({"data": {"dataset": "mnist"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+ invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match=r"must look like dotted\.key=value"):
        apply_overrides(BASE, ["optim.lr"])
