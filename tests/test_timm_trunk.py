"""The ``timm`` trunk: a timm backbone's feature levels as mtlab stages, under every soft-sharing kind.

timm needs torchvision, and the only torchvision wheels the package registries serve for Linux are CUDA builds that
do not load beside the CPU wheel of torch; so where timm cannot be imported, the real-timm test skips (saying so)
and the stage-cutting is checked against a stand-in with the structure timm documents for its feature extractors
(``timm/models/_features.py``: a ModuleDict of the model's modules in run order, ``return_layers`` naming the module
after which each level is taken, ``feature_info``).
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from mtlab.config.schema import RunConfig
from mtlab.errors import ConfigError
from mtlab.models import build_model
from mtlab.tasks import Task

TASKS = {"item": Task("item", tuple("abcdefghij")), "group": Task("group", ("x", "y", "z"))}


class StandIn(nn.ModuleDict):
    """A FeatureListNet as timm lays it out: stem, then two levels (reduction 2 and 4)."""

    def __init__(self, in_chans: int):
        super().__init__(
            {
                "conv1": nn.Conv2d(in_chans, 8, 3, stride=2, padding=1),
                "act1": nn.ReLU(),
                "layer1": nn.Conv2d(8, 8, 3, padding=1),
                "layer2": nn.Conv2d(8, 16, 3, stride=2, padding=1),
            }
        )
        self.return_layers = {"act1": "0", "layer2": "1"}

    def forward(self, x):
        out = []
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out.append(x)
        return out


@pytest.fixture
def stand_in_timm(monkeypatch):
    calls = []

    def create_model(name, **kwargs):
        calls.append((name, kwargs))
        if name == "vit_tiny":
            return nn.Linear(2, 2)  # a hook-based extractor: no return_layers
        return StandIn(kwargs["in_chans"])

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    return calls


def config(kind: str = "multitask", **trunk) -> RunConfig:
    return RunConfig.model_validate(
        {
            "data": {"dataset": "fashion-mnist-sample"},
            "model": {"kind": kind, "trunk": {"type": "timm", "name": "resnet18", **trunk}},
        }
    )


def test_feature_levels_become_stages(stand_in_timm):
    model = build_model(config(), TASKS, (1, 28, 28))
    trunk = model.staged_trunks()["shared"]
    assert [s.name for s in trunk.stage_info] == ["levels.0", "levels.1"]
    assert [s.shape for s in trunk.stage_info] == [(8, 14, 14), (16, 7, 7)]
    out = model(torch.randn(5, 1, 28, 28))
    assert out["item"].shape == (5, 10)
    assert out["group"].shape == (5, 3)
    name, kwargs = stand_in_timm[0]
    assert name == "resnet18"
    assert kwargs == {"features_only": True, "in_chans": 1, "pretrained": False}


@pytest.mark.parametrize("kind", ["cross_stitch", "mtan", "mmoe"])
def test_soft_sharing_kinds_are_wired_from_a_timm_backbone(stand_in_timm, kind):
    model = build_model(config(kind), TASKS, (3, 32, 32))
    out = model(torch.randn(2, 3, 32, 32))
    assert {t: o.shape for t, o in out.items()} == {"item": (2, 10), "group": (2, 3)}


def test_local_weights_and_stages_reach_timm(stand_in_timm, tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    build_model(config(weights=str(weights), stages=[1]), TASKS, (1, 28, 28))
    kwargs = stand_in_timm[0][1]
    assert kwargs["pretrained"] is True
    assert kwargs["pretrained_cfg_overlay"] == {"file": str(weights)}
    assert kwargs["out_indices"] == (1,)


def test_clear_errors(stand_in_timm, tmp_path):
    with pytest.raises(ConfigError, match=r"model\.trunk\.weights"):
        build_model(config(weights=str(tmp_path / "missing.pth")), TASKS, (1, 28, 28))
    with pytest.raises(ConfigError, match="stage by stage"):
        build_model(config(name="vit_tiny"), TASKS, (1, 28, 28))


def test_without_timm_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(Exception, match=r"mtlab\[timm\]"):
        build_model(config(), TASKS, (1, 28, 28))


def test_a_real_timm_resnet():
    try:
        import timm  # noqa: F401
    except Exception as e:  # ImportError, or torchvision's CUDA build failing beside a CPU torch
        pytest.skip(f"timm cannot be imported here ({type(e).__name__}: {e})")
    model = build_model(config("mtan"), TASKS, (3, 32, 32))
    trunk = model.staged_trunks()["shared"]
    assert len(trunk.stage_info) == 5  # resnet18: stem and four stages
    assert model(torch.randn(2, 3, 32, 32))["item"].shape == (2, 10)
