"""Soft-sharing model kinds (cross-stitch, MTAN, MMoE, PLE/CGC) and the staged trunk contract they are built from.

Every suite here is parametrised over the model registry (or asserts that it covers it), so a new kind is tested the
day it is registered: parameter counts against hand computations, forward and backward on every dataset shape, the
shared/task split against what autograd reaches, stacked replicas against solo runs, and the analysis commands on a
trained cross-stitch run.
"""

from __future__ import annotations

import argparse
import importlib
import math
from typing import Any

import pytest
import torch
from pydantic import TypeAdapter

from mtlab.analysis import transfer
from mtlab.analysis.features import layer_outputs
from mtlab.analysis.loaded import choose_trunk, conv_layers, load_trained_run, trunk_inputs
from mtlab.config import parse_config
from mtlab.config.schema import Trunk, model_kind
from mtlab.data.tasks import Task
from mtlab.errors import ConfigError, MtlabError
from mtlab.models import MODELS, TRUNKS, MultiTaskNet, build_model, create_trunk
from mtlab.models.dselect_k import selector_weights, smooth_step
from mtlab.models.staged import StagedTrunk
from mtlab.search.space import describe
from mtlab.train.replicas import stacking_pays
from mtlab.train.run import train_run
from test_models import assert_partition, loss_reach
from test_replicas import CPU, FASHION_TASKS, assert_same, fashion_splits, solo_and_group


def make_task(name: str, num_classes: int) -> Task:
    return Task(name, tuple(f"{name}{i}" for i in range(num_classes)))


FASHION = {"item": make_task("item", 10), "group": make_task("group", 3)}
CIFAR = {"fine": make_task("fine", 100), "coarse": make_task("coarse", 20)}
DATASETS = {  # dataset -> (its tasks, the shape of one example)
    "fashion-mnist": (FASHION, (1, 28, 28)),
    "cifar100": (CIFAR, (3, 32, 32)),
}
SOFT_KINDS = [kind for kind in MODELS.names() if kind not in ("multitask", "pairs")]
HEADED_KINDS = [kind for kind in MODELS.names() if kind != "pairs"]

TRUNKS_BY_TYPE: dict[str, dict[str, Any]] = {
    "mlp": {"type": "mlp", "widths": [8, 6], "batch_norm": True, "dropout": 0.1},
    "cnn": {"type": "cnn", "conv": [{"filters": 4, "pool": 2, "batch_norm": True}, {"filters": 6, "pool": 2}]},
    "resnet": {"type": "resnet", "stem": 4, "widths": [4, 6]},
    "timm": {"type": "timm", "name": "resnet18"},
    "imagenet_resnet": {"type": "imagenet_resnet", "depth": 18},
}


def buildable(build):
    """``build()``, or a skip when it needs an optional library this machine cannot import (timm: the registries
    serve only CUDA builds of the torchvision it needs)."""
    try:
        return build()
    except MtlabError as e:
        pytest.skip(str(e))


def model_raw(kind: str, trunk: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A model section of ``kind`` whose trunk(s) are ``trunk`` (PLE: two levels, the second a small MLP)."""
    if kind == "ple":
        return {"kind": kind, "levels": [trunk, {"type": "mlp", "widths": [5]}], "task_experts": 2, **extra}
    if kind == "mmoe":
        return {"kind": kind, "trunk": trunk, "experts": 3, **extra}
    if kind == "dselect_k":
        return {"kind": kind, "trunk": trunk, "experts": 4, "k": 2, **extra}
    return {"kind": kind, "trunk": trunk, **extra}


def net(kind: str, dataset: str = "fashion-mnist", trunk: dict[str, Any] | None = None, **extra: Any) -> MultiTaskNet:
    tasks, shape = DATASETS[dataset]
    raw = {"data": {"dataset": dataset}, "model": model_raw(kind, trunk or TRUNKS_BY_TYPE["cnn"], **extra)}
    return build_model(parse_config(raw), tasks, shape)


def test_the_soft_sharing_kinds_are_registered():
    assert {"cross_stitch", "mtan", "mmoe", "ple", "dselect_k", "ltb"} <= set(SOFT_KINDS)


# -------------------------------------------------------------------------------------------- the staged contract


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=str)
@pytest.mark.parametrize("name", TRUNKS.names())
def test_every_trunk_runs_stage_by_stage_to_the_shapes_it_announces(name, shape):
    trunk, width = buildable(lambda: create_trunk(TypeAdapter(Trunk).validate_python(TRUNKS_BY_TYPE[name]), shape))
    assert isinstance(trunk, StagedTrunk)
    trunk.eval()
    x = torch.randn(2, *shape)
    outputs = trunk.forward_stages(x)
    assert len(outputs) == len(trunk.stage_info) > 0
    for out, stage in zip(outputs, trunk.stage_info, strict=True):
        assert tuple(out.shape) == (2, *stage.shape), stage.name
        assert isinstance(trunk.get_submodule(stage.name), torch.nn.Module)
    torch.testing.assert_close(trunk.reduce(outputs[-1]), trunk(x))
    assert trunk(x).shape == (2, width)
    assert width == trunk.out_features
    assert trunk.map_shape == trunk.stage_info[-1].shape


def test_stage_names_are_module_paths_and_parameter_names_are_unchanged():
    trunk, _ = create_trunk(TypeAdapter(Trunk).validate_python({**TRUNKS_BY_TYPE["cnn"], "dense": [5]}), (1, 8, 8))
    assert [(s.name, s.shape) for s in trunk.stage_info] == [
        ("conv.0", (4, 4, 4)),
        ("conv.1", (6, 2, 2)),
        ("dense.0", (5,)),
    ]
    assert "conv.0.0.weight" in dict(trunk.named_parameters())  # the first convolution keeps its name


# ---------------------------------------------------------------------------------------------- parameter counts

# Input (1, 2, 2) -> 4 values; an MLP trunk of one hidden layer of 3 (4*3 + 3 = 15 parameters); heads without hidden
# layers: item 3*10 + 10 = 40, group 3*3 + 3 = 12. Each case: model section, then per-part counts by hand.
TINY_TRUNK = {"type": "mlp", "widths": [3]}
HAND_COUNTS: dict[str, tuple[dict[str, Any], dict[str, int]]] = {
    "multitask": (
        {"kind": "multitask", "trunk": TINY_TRUNK},
        {"trunks.shared": 15, "heads.item": 40, "heads.group": 12, "shared": 15, "task:item": 40, "task:group": 12},
    ),
    "cross_stitch": (  # two columns; one stage -> one 2 x 2 unit
        {"kind": "cross_stitch", "trunk": TINY_TRUNK},
        {"columns.item": 15, "columns.group": 15, "stitch": 4, "heads.item": 40, "heads.group": 12, "shared": 34},
    ),
    "mtan": (  # per task and stage: linear 3 -> 3 (12), ReLU, linear 3 -> 3 (12)
        {"kind": "mtan", "trunk": TINY_TRUNK},
        {"trunk": 15, "attention.item": 24, "attention.group": 24, "shared": 15, "task:item": 64, "task:group": 36},
    ),
    "mmoe": (  # two experts; gates: linear 4 -> 2 (10) per task
        {"kind": "mmoe", "trunk": TINY_TRUNK, "experts": 2},
        {"experts.0": 15, "experts.1": 15, "gates.item": 10, "gates.group": 10, "shared": 30, "task:item": 50},
    ),
    "dselect_k": (  # two experts (m = 1 bit), k = 2; per-example gates: z linear 4 -> 2 (10), w linear 4 -> 2 (10)
        {"kind": "dselect_k", "trunk": TINY_TRUNK, "experts": 2, "k": 2},
        {"experts.0": 15, "experts.1": 15, "gates.item": 20, "gates.group": 20, "shared": 30, "task:item": 60},
    ),
    "ltb": (  # two branches (one per task); one stage, so no layer choices; each head chooses among 2 nodes (2)
        {"kind": "ltb", "trunk": TINY_TRUNK},
        {"nodes.0": 15, "nodes.1": 15, "head_choices.item": 2, "shared": 30, "task:item": 42, "task:group": 14},
    ),
    "ple": (
        # Level 0: experts 4 -> 3 (15) for item, group, shared; task gates 4 -> 2 (10); shared gate 4 -> 3 (15).
        # Level 1 (last): experts 3 -> 2 (8) each; task gates 3 -> 2 (8); heads item 2*10+10 = 30, group 2*3+3 = 9.
        {"kind": "ple", "levels": [TINY_TRUNK, {"type": "mlp", "widths": [2]}]},
        {
            "levels.0.task_experts.item": 15,
            "levels.0.shared_experts": 15,
            "levels.0.gates.item": 10,
            "levels.0.shared_gate": 15,
            "levels.1.task_experts.group": 8,
            "levels.1.gates.group": 8,
            "heads.item": 30,
            "heads.group": 9,
            "shared": 15 + 15 + 15 + 15 + 8,  # level-0 experts (the shared gate mixes them), shared gate and expert
            "task:item": 10 + 8 + 8 + 30,
            "task:group": 10 + 8 + 8 + 9,
        },
    ),
}


def test_every_headed_kind_has_a_hand_count():
    assert set(HAND_COUNTS) == set(HEADED_KINDS)


@pytest.mark.parametrize("kind", HEADED_KINDS)
def test_parameter_counts_match_hand_computations(kind):
    model_section, expected = HAND_COUNTS[kind]
    config = parse_config({"data": {"dataset": "fashion-mnist"}, "model": model_section})
    model = build_model(config, FASHION, (1, 2, 2))
    counts = model.parameter_counts()
    assert {key: counts[key] for key in expected} == expected
    assert counts["shared"] + sum(counts[f"task:{t}"] for t in model.task_names) == sum(
        p.numel() for p in model.parameters()
    )


def test_cgc_is_ple_with_one_level():
    model = build_model(
        parse_config({"data": {"dataset": "fashion-mnist"}, "model": {"kind": "ple", "levels": [TINY_TRUNK]}}),
        FASHION,
        (1, 2, 2),
    )
    counts = model.parameter_counts()
    # One level: no shared gate; the shared expert is the only shared part; task experts are their task's own.
    assert counts["shared"] == 15
    assert counts["task:item"] == 15 + 10 + 40
    assert "levels.0.shared_gate" not in counts


@pytest.mark.parametrize("kind", MODELS.names())
def test_each_kind_names_the_trunk_a_search_varies(kind):
    cls = model_kind(kind)
    assert cls.trunk_field in cls.model_fields
    raw = {"data": {"dataset": "fashion-mnist"}, "model": model_raw(kind, TINY_TRUNK)}
    if kind == "pairs":
        raw = {"data": {"dataset": "mnist-pairs"}, "model": {"kind": "pairs", "branch": TINY_TRUNK}}
    config = parse_config(raw)
    assert describe(config).label == "3"
    assert config.model.dense_only()
    assert config.model.sharing_label()


# ---------------------------------------------------------------------------- forward and backward, every dataset


@pytest.mark.parametrize("trunk", sorted(TRUNKS_BY_TYPE))
@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("kind", HEADED_KINDS)
def test_every_kind_trains_on_every_image_dataset(kind, dataset, trunk):
    torch.manual_seed(0)
    model = buildable(lambda: net(kind, dataset, TRUNKS_BY_TYPE[trunk]))
    tasks, shape = DATASETS[dataset]
    out = model(torch.randn(4, *shape))
    assert list(out) == list(tasks)
    loss = sum(torch.nn.functional.cross_entropy(logits, torch.zeros(4, dtype=torch.long)) for logits in out.values())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    features = model.features(torch.randn(4, *shape))
    assert all(f.ndim == 2 and f.shape[0] == 4 for f in features.values())


@pytest.mark.parametrize("kind", SOFT_KINDS)
def test_digit_pairs_need_a_pair_model(kind):
    raw = {"data": {"dataset": "mnist-pairs"}, "model": model_raw(kind, TINY_TRUNK)}
    with pytest.raises(ConfigError, match=r"model\.kind: mnist-pairs data needs a 'pairs' model"):
        parse_config(raw)


@pytest.mark.parametrize("kind", SOFT_KINDS)
def test_each_kind_checks_its_reuse_edges_and_heads(kind):
    base = {"data": {"dataset": "fashion-mnist"}}
    with pytest.raises(ConfigError, match=r"model.reuse\[0\].source: unknown task 'colour'"):
        parse_config({**base, "model": model_raw(kind, TINY_TRUNK, reuse="colour->item")})
    with pytest.raises(ConfigError, match=r"model\.heads\.fine: unknown task"):
        parse_config({**base, "model": model_raw(kind, TINY_TRUNK, heads={"fine": {}})})


def test_a_ple_level_that_needs_a_feature_map_after_dense_layers_is_a_config_error():
    levels = [{"type": "mlp", "widths": [4]}, {"type": "cnn", "conv": [{"filters": 3}]}]
    with pytest.raises(ConfigError, match=r"model.levels\[1\]: a cnn level needs a feature map"):
        parse_config({"data": {"dataset": "fashion-mnist"}, "model": {"kind": "ple", "levels": levels}})


# ----------------------------------------------------------------------------------------- the parameter partition

PARTITION_VARIANTS = {
    "plain": {},
    "reuse": {"reuse": "group->item", "head": {"widths": [4]}},
    "reuse, stop gradient": {"reuse": {"source": "item", "target": "group", "stop_gradient": True}},
}


@pytest.mark.parametrize("variant", list(PARTITION_VARIANTS))
@pytest.mark.parametrize("trunk", ["mlp", "cnn"])
@pytest.mark.parametrize("kind", SOFT_KINDS)
def test_shared_parameters_are_what_several_losses_reach(kind, trunk, variant):
    torch.manual_seed(0)
    tiny = {"mlp": TINY_TRUNK, "cnn": {"type": "cnn", "conv": [{"filters": 2, "pool": 2}, {"filters": 3}]}}[trunk]
    raw = {"data": {"dataset": "fashion-mnist"}, "model": model_raw(kind, tiny, **PARTITION_VARIANTS[variant])}
    model = build_model(parse_config(raw), FASHION, (1, 6, 6))
    assert_partition(model)
    for part in model.parts():  # a part's name is its module path, so named views of stacked replicas can use it
        assert model.get_submodule(part.name) is part.module
    reach = loss_reach(model, torch.randn(3, 1, 6, 6))
    assert {id(p) for p in model.shared_parameters()} == {i for i, tasks in reach.items() if len(tasks) > 1}
    for task in model.task_names:
        assert {id(p) for p in model.task_parameters(task)} == {i for i, tasks in reach.items() if tasks == {task}}


@pytest.mark.parametrize("kind", SOFT_KINDS)
def test_one_task_owns_every_parameter(kind):
    raw = {"data": {"dataset": "fashion-mnist"}, "tasks": ["group"], "model": model_raw(kind, TINY_TRUNK)}
    model = build_model(parse_config(raw), FASHION, (1, 2, 2))
    assert not list(model.shared_parameters())
    assert len(list(model.task_parameters("group"))) == len(list(model.parameters()))
    assert list(model(torch.randn(2, 1, 2, 2))) == ["group"]


PLE_LEVELS = [TINY_TRUNK, {"type": "mlp", "widths": [3]}, {"type": "mlp", "widths": [2]}]


def test_a_three_level_ple_shares_the_first_task_gates():
    raw = {"data": {"dataset": "fashion-mnist"}, "model": {"kind": "ple", "levels": PLE_LEVELS}}
    model = build_model(parse_config(raw), FASHION, (1, 2, 2))
    shared = {id(p) for p in model.shared_parameters()}
    assert {id(p) for p in model.levels[0].gates["item"].parameters()} <= shared
    assert not {id(p) for p in model.levels[1].gates["item"].parameters()} & shared
    reach = loss_reach(model, torch.randn(3, 1, 2, 2))
    assert shared == {i for i, tasks in reach.items() if len(tasks) > 1}


# ------------------------------------------------------------------------------------------------------- wiring


def test_cross_stitch_starts_near_identity_and_with_identity_is_independent_columns():
    model = net("cross_stitch")
    alpha = model.stitch.alpha
    assert alpha.shape == (2, 2, 2)  # two conv stages, two tasks
    torch.testing.assert_close(alpha[0], torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    torch.testing.assert_close(alpha.sum(-1), torch.ones(2, 2))
    identity = net("cross_stitch", self_weight=1.0).eval()
    x = torch.randn(2, 1, 28, 28)
    got = identity.features(x)
    for task in identity.task_names:
        torch.testing.assert_close(got[task], identity.columns[task](x))


def test_mmoe_with_one_expert_is_hard_sharing():
    model = net("mmoe", experts=1).eval()
    x = torch.randn(3, 1, 28, 28)
    shared = model.experts[0](x)
    for h in model.features(x).values():
        torch.testing.assert_close(h, shared)


def test_mtan_masks_select_from_the_shared_features():
    model = net("mtan", trunk={"type": "mlp", "widths": [6]}).eval()
    x = torch.randn(3, 1, 28, 28)
    shared = model.trunk(x)  # (B, 6)
    for h in model.features(x).values():
        assert h.shape == shared.shape
        active = shared != 0  # ReLU zeros stay zero under any mask
        assert active.any()
        assert (h[~active] == 0).all()
        ratio = h[active] / shared[active]
        assert ((ratio > 0) & (ratio < 1)).all()  # a sigmoid mask in (0, 1) times the shared features


def test_smooth_step_is_zero_one_and_flat_outside_its_cubic_region():
    gamma = 2.0
    t = torch.tensor([-5.0, -1.0, -0.5, 0.0, 0.5, 1.0, 5.0], requires_grad=True)
    s = smooth_step(t, gamma)
    # -2 t^3 / 8 + 3 t / 4 + 1/2 at t = +-0.5: 1/2 +- (3/8 - 1/32)
    torch.testing.assert_close(s.detach(), torch.tensor([0.0, 0.0, 0.15625, 0.5, 0.84375, 1.0, 1.0]))
    s.sum().backward()
    assert t.grad[0] == t.grad[-1] == 0
    assert t.grad[3] == 0.75


def test_dselect_k_selectors_sum_to_one_and_decide_on_the_binary_codes():
    z = torch.randn(5, 3, 2)  # 5 examples, 3 selectors, m = 2 bits -> 4 experts
    weights = selector_weights(z, 1.0, 4)
    assert weights.shape == (5, 3, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, 3))
    decided = torch.tensor([[-1.0, 1.0], [1.0, 1.0]])  # codes 01 and 11: experts 1 and 3
    assert selector_weights(decided, 1.0, 4).tolist() == [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


def test_a_decided_dselect_k_gate_mixes_at_most_k_experts():
    model = net("dselect_k", trunk={"type": "mlp", "widths": [4]}, experts=8, k=2, routing="task").eval()
    gate = model.gates["item"]
    assert gate.z.shape == (2, 3)
    assert gate.z.abs().max() <= 0.01
    with torch.no_grad():
        gate.z.copy_(torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]]))  # experts 5 and 1
    x = torch.randn(3, 1, 28, 28)
    weights = gate(x)
    assert weights.shape == (3, 8)
    assert set(weights[0].nonzero().flatten().tolist()) == {1, 5}
    torch.testing.assert_close(weights[0], weights[2])  # routing: task - the same choice for every example
    outputs = [expert(x) for expert in model.experts]
    expected = weights[:, 1:2] * outputs[1] + weights[:, 5:6] * outputs[5]
    torch.testing.assert_close(model.features(x)["item"], expected)


def test_dselect_k_routes_each_example_by_default():
    model = net("dselect_k", trunk={"type": "mlp", "widths": [4]}, experts=4, k=2, gamma=0.01).eval()
    weights = model.gates["group"](torch.randn(6, 1, 28, 28))
    torch.testing.assert_close(weights.sum(-1), torch.ones(6))
    assert not torch.allclose(weights[0], weights[1])


def test_dselect_k_needs_a_power_of_two_experts_and_k_at_most_that():
    base = {"data": {"dataset": "fashion-mnist"}}
    with pytest.raises(ConfigError, match=r"model.experts: 6 is not a power of 2.*use 4 or 8"):
        parse_config({**base, "model": {"kind": "dselect_k", "trunk": TINY_TRUNK, "experts": 6}})
    with pytest.raises(ConfigError, match=r"model.k: 3 selectors for 2 experts"):
        parse_config({**base, "model": {"kind": "dselect_k", "trunk": TINY_TRUNK, "experts": 2, "k": 3}})


LTB_CNN = {"type": "cnn", "conv": [{"filters": 3, "pool": 2}, {"filters": 4, "pool": 2}, {"filters": 5}]}


def test_ltb_with_peaked_choices_is_the_tree_they_name():
    model = net("ltb", trunk=LTB_CNN, branches=3).eval()
    assert [c.theta.shape for c in model.choices] == [(3, 3), (3, 3)]  # layers 1 and 2 choose among 3 parents
    peaked = {"choices.0": [2, 2, 0], "choices.1": [1, 0, 0], "head_choices.item": [0], "head_choices.group": [1]}
    with torch.no_grad():
        for name, parents in peaked.items():
            theta = model.get_submodule(name).theta
            theta.fill_(-1e4)
            theta[torch.arange(len(parents)), torch.tensor(parents)] = 0.0
    assert model.tree() == {"layer1": [2, 2, 0], "layer2": [1, 0, 0], "item": [0], "group": [1]}
    x = torch.randn(2, 1, 28, 28)
    n = model.nodes
    layer0 = [node.run_stage(0, x) for node in n]
    # item: head <- node 0 of layer 2 <- node 1 of layer 1 <- node 2 of layer 0
    item = n[0].reduce(n[0].run_stage(2, n[1].run_stage(1, layer0[2])))
    # group: head <- node 1 of layer 2 <- node 0 of layer 1 <- node 2 of layer 0 (shares layer 0 with item)
    group = n[1].reduce(n[1].run_stage(2, n[0].run_stage(1, layer0[2])))
    features = model.features(x)
    torch.testing.assert_close(features["item"], item)
    torch.testing.assert_close(features["group"], group)


def test_ltb_samples_its_choices_only_while_training_unless_told_not_to():
    x = torch.randn(2, 1, 28, 28)
    model = net("ltb", trunk=LTB_CNN, hard=False)
    with torch.no_grad():
        for choice in model.choices:
            choice.theta.normal_()
        sampled = [model.features(x)["item"] for _ in range(2)]
        assert not torch.allclose(*sampled)
        model.eval()
        torch.testing.assert_close(model.features(x)["item"], model.features(x)["item"])
    plain = net("ltb", trunk=LTB_CNN, gumbel=False)
    torch.testing.assert_close(plain.features(x)["group"], plain.features(x)["group"])


def test_ltb_follows_libmtls_schedule_warm_up_then_a_decaying_temperature():
    """LibMTL's LTB.py: epoch < epochs / 100 sums every parent; then tau = epochs / 20 / sqrt(epoch + 1) (epochs
    from 0 there, from 1 here)."""
    from mtlab.models.ltb import ltb_schedule

    config = net("ltb", trunk=LTB_CNN).config
    assert config.temperature is None
    assert config.hard
    assert config.warmup_fraction == 0.01
    assert [ltb_schedule(config, e, 200) for e in (1, 2, 3, 4)] == [
        (True, 200 / 20 / math.sqrt(1)), (True, 200 / 20 / math.sqrt(2)), (False, 200 / 20 / math.sqrt(3)),
        (False, 5.0),
    ]  # 200 epochs: epochs 0 and 1 of LibMTL (< 2) are the warm-up
    assert [ltb_schedule(config, e, 5)[0] for e in range(1, 6)] == [True, False, False, False, False]
    assert ltb_schedule(config, 5, 5)[1] == pytest.approx(0.25 / math.sqrt(5))
    fixed = config.model_copy(update={"temperature": 2.0})  # the option of earlier versions still fixes tau
    assert ltb_schedule(fixed, 3, 10) == (False, 2.0)
    model = net("ltb", trunk=LTB_CNN, branches=3)
    x = torch.randn(2, 1, 28, 28)
    model.start_epoch(1, 10)  # warm-up: each child reads the sum of its parents
    assert all(torch.equal(c(), torch.ones_like(c.theta)) for c in model.choices)
    n = model.nodes
    layer0 = [node.run_stage(0, x) for node in n]
    layer1 = [node.run_stage(1, sum(layer0)) for node in n]
    layer2 = [node.reduce(node.run_stage(2, sum(layer1))) for node in n]
    torch.testing.assert_close(model.features(x)["item"], sum(layer2))
    model.start_epoch(4, 10)
    assert {c.temperature for c in model.choices} == {10 / 20 / 2}


def test_ltb_trains_on_hard_one_hot_samples_with_the_soft_gradient_and_evaluates_the_tree():
    model = net("ltb", trunk=LTB_CNN, branches=3)
    model.start_epoch(5, 10)
    choice = model.choices[0]
    with torch.no_grad():
        choice.theta.normal_()
    for _ in range(5):
        d = choice()
        assert set(d.detach().flatten().tolist()) == {0.0, 1.0}
        assert torch.equal(d.detach().sum(-1), torch.ones(3))
    (choice() * torch.arange(3.0)).sum().backward()
    assert choice.theta.grad is not None
    assert choice.theta.grad.abs().sum() > 0
    model.eval()
    assert torch.equal(choice(), torch.nn.functional.one_hot(choice.theta.argmax(-1), 3).float())
    soft = net("ltb", trunk=LTB_CNN, branches=3, hard=False)
    soft.start_epoch(5, 10)
    d = soft.choices[0]()
    assert not set(d.detach().flatten().tolist()) <= {0.0, 1.0}


def test_ltb_with_one_branch_is_hard_sharing():
    model = net("ltb", trunk=LTB_CNN, branches=1).eval()
    x = torch.randn(3, 1, 28, 28)
    shared = model.nodes[0](x)
    for h in model.features(x).values():
        torch.testing.assert_close(h, shared)


# ----------------------------------------------------------------------------------------------- stacked seeds


def stacked_config(kind: str, seed: int):
    trunk = {"type": "cnn", "conv": [{"filters": 4, "pool": 2, "batch_norm": True}], "dense": [8]}
    if kind == "ple":
        trunk = {"type": "cnn", "conv": [{"filters": 4, "pool": 2, "batch_norm": True}]}
    return parse_config(
        {
            "seed": seed,
            "data": {"dataset": "fashion-mnist-sample"},
            "model": model_raw(kind, trunk, head={"widths": [6]}, reuse="group->item"),
            "optim": {"lr": 0.003, "grad_clip": 1.0},
            "train": {"epochs": 2, "batch_size": 32},
        }
    )


@pytest.mark.parametrize("kind", SOFT_KINDS)
def test_stacked_replicas_equal_solo_runs(kind):
    configs = [stacked_config(kind, seed) for seed in (0, 1)]
    if kind == "ltb":  # its Gumbel noise is drawn per replica, as dropout masks are: compare without it
        configs = [c.model_copy(update={"model": c.model.model_copy(update={"gumbel": False})}) for c in configs]
    solo, group = solo_and_group(configs, FASHION_TASKS, (1, 12, 12), fashion_splits)
    for s, g in zip(solo, group, strict=True):
        assert_same(s, g)
    assert solo[0].history[-1]["train.loss"] != solo[1].history[-1]["train.loss"]


@pytest.mark.parametrize("kind", HEADED_KINDS)
def test_stacking_pays_on_the_cpu_for_dense_kinds_only(kind):
    def config(trunk):
        return parse_config({"data": {"dataset": "fashion-mnist"}, "model": model_raw(kind, trunk)})

    assert stacking_pays(config(TINY_TRUNK), CPU)
    assert not stacking_pays(config(TRUNKS_BY_TYPE["cnn"]), CPU)
    assert stacking_pays(config(TRUNKS_BY_TYPE["cnn"]), torch.device("cuda"))


# -------------------------------------------------------------------------------- analysis of a cross-stitch run


STITCHED_CNN = {"type": "cnn", "conv": [{"filters": 4, "pool": 2}, {"filters": 6}]}


@pytest.fixture(scope="module")
def stitched_run(built_once):
    """A tiny cross-stitch CNN trained once for the session on the embedded sample."""
    config = {
        "name": "stitch",
        "data": {"dataset": "fashion-mnist-sample", "train_subset": 300, "test_subset": 60},
        "model": {"kind": "cross_stitch", "trunk": STITCHED_CNN},
        "train": {"epochs": 1, "batch_size": 50, "device": "cpu"},
    }

    def make(root):
        train_run(parse_config(config), root / "stitch")
        return root / "stitch"

    return built_once("test_architectures-stitched", make)


def test_a_stitched_column_is_analysed_as_the_network_computes_it(stitched_run):
    run = load_trained_run(stitched_run)
    key, column = choose_trunk(run, task="group")
    assert key == "group"
    layers = conv_layers(column)
    assert [layer.name for layer in layers] == ["conv.0.0", "conv.1.0"]
    assert layers[1].module is run.model.columns["group"].get_submodule("conv.1.0")
    x = trunk_inputs(run, key, torch.randn(2, 1, 28, 28))
    # The second convolution of the group column reads the *stitched* first stage, so hooking the whole network
    # and hooking the column view must agree - and differ from running the column alone.
    seen = {}
    handle = layers[1].module.register_forward_hook(lambda m, a, out: seen.setdefault("net", out))
    with torch.no_grad():
        run.model(x)
    handle.remove()
    with torch.no_grad():
        view = layer_outputs(column, x, [layers[1]])[layers[1].name]
        alone = layer_outputs(run.model.columns["group"], x, [layers[1]])[layers[1].name]
    torch.testing.assert_close(view, seen["net"])
    assert not torch.allclose(alone, seen["net"])


def _analyze(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mtlab analyze")
    subparsers = parser.add_subparsers(required=True)
    for name in ("filters", "features", "maximize", "dream", "transfer"):
        importlib.import_module(f"mtlab.cli.analyze.{name}").add_cli(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize(
    "argv",
    [
        ["filters", "--trunk", "item"],
        ["features", "--task", "group", "--index", "3"],
        ["maximize", "--steps", "2", "--classes", "--task", "group"],
        ["dream", "--steps", "2", "--octaves", "1", "--layer", "2"],
    ],
    ids=lambda argv: argv[0],
)
def test_every_picture_command_works_on_a_cross_stitch_run(stitched_run, tmp_path, argv):
    out = tmp_path / argv[0]
    assert _analyze([*argv[:1], "--run", str(stitched_run), "--out", str(out), *argv[1:]]) == 0
    assert (out / "report.html").stat().st_size > 1000
    assert any(out.rglob("*.png"))


def test_transfer_probes_every_stitched_column(stitched_run, tmp_path):
    out = tmp_path / "transfer"
    assert _analyze(["transfer", "--run", str(stitched_run), "--task", "item", "--out", str(out)]) == 0
    assert (out / "report.html").is_file()
    assert (out / "transfer.csv").is_file()
    results = transfer.probe_run(load_trained_run(stitched_run), "group")
    assert [r.trunk for r in results] == ["item", "group"]
    assert all(r.sharing == "cross_stitch" for r in results)
    assert all(0 <= r.test_acc <= 1 for r in results)
