"""Models: registries, shapes, the shared/task parameter partition, cascade gradients, initialisation."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from torch import nn

from mtlab.config import parse_config
from mtlab.config.schema import ModelConfig, Trunk
from mtlab.data.tasks import Task
from mtlab.errors import ConfigError, MtlabError
from mtlab.models import MODEL_KINDS, TRUNKS, MultiTaskNet, build_model, create_trunk
from mtlab.models.layers import ConvLayer
from mtlab.registry import Registry


def make_task(name: str, num_classes: int) -> Task:
    return Task(name, tuple(f"{name}{i}" for i in range(num_classes)))


FASHION = {"item": make_task("item", 10), "group": make_task("group", 3)}
PAIRS = {"leq": make_task("leq", 2), "digit_a": make_task("digit_a", 10), "digit_b": make_task("digit_b", 10)}

SMALL_MLP = {"type": "mlp", "widths": [8]}


def fashion_net(input_shape=(1, 8, 8), tasks=None, **model: Any) -> MultiTaskNet:
    raw: dict[str, Any] = {"data": {"dataset": "fashion-mnist"}, "model": {"trunk": SMALL_MLP, **model}}
    if tasks is not None:
        raw["tasks"] = tasks
    return build_model(parse_config(raw), FASHION, input_shape)


def pair_net(weight_sharing: bool, **model: Any) -> MultiTaskNet:
    raw = {"kind": "pairs", "branch": SMALL_MLP, "head": {"widths": [4]}, "weight_sharing": weight_sharing, **model}
    return build_model(parse_config({"data": {"dataset": "mnist-pairs"}, "model": raw}), PAIRS, (2, 6, 6))


def assert_partition(model: MultiTaskNet) -> None:
    """shared_parameters() and the task_parameters(t) cover every parameter exactly once."""
    grouped = [id(p) for p in model.shared_parameters()]
    for task in model.task_names:
        grouped += [id(p) for p in model.task_parameters(task)]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())


def loss_reach(model: MultiTaskNet, x: torch.Tensor) -> dict[int, set[str]]:
    """For each parameter (by id), the tasks whose output has a gradient path to it, found by autograd."""
    params = list(model.parameters())
    reach: dict[int, set[str]] = {id(p): set() for p in params}
    for task, logits in model(x).items():
        grads = torch.autograd.grad(logits.sum(), params, retain_graph=True, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            if g is not None:
                reach[id(p)].add(task)
    return reach


# ------------------------------------------------------------------------------------------------------ registries


def test_registry_registers_once_and_names_unknown_builders():
    registry: Registry = Registry("thing")

    @registry.register("a")
    def build_a():
        return "a"

    assert registry.get("a") is build_a
    assert "a" in registry
    assert registry.names() == ["a"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(build_a)
    with pytest.raises(KeyError, match=r"no thing registered as 'b'; known: \['a'\]"):
        registry.get("b")


INPUT_SHAPES = [(1, 14, 14), (3, 32, 32), (2, 9, 7)]


def test_the_registries_hold_mtlabs_own_and_the_outside_plug_ins():
    assert {"mlp", "cnn", "resnet", "timm", "imagenet_resnet", "demo_gated"} <= set(TRUNKS.names())
    assert {"multitask", "pairs", "custom", "segnet", "deeplab", "demo_mlp"} <= set(MODEL_KINDS.names())
    assert len(MODEL_KINDS.names()) >= 13


@pytest.mark.parametrize("shape", INPUT_SHAPES, ids=str)
@pytest.mark.parametrize("name", TRUNKS.names())
def test_every_trunk_builds_its_example_and_runs(name, shape):
    config = TypeAdapter(Trunk).validate_python(TRUNKS.get(name).example())
    assert config.type == name
    try:
        trunk, width = create_trunk(config, shape)
    except MtlabError as e:  # a trunk from an optional library that cannot be imported here (timm)
        pytest.skip(str(e))
    features = trunk(torch.randn(2, *shape))
    assert features.shape == (2, width)
    widths, label = config.layer_widths()  # what a search's table shows
    assert all(isinstance(w, int) and w > 0 for w in widths)
    assert label
    if config.dense_only():
        assert not any(isinstance(m, nn.Conv2d) for m in trunk.modules())


@pytest.mark.parametrize("name", TRUNKS.names())
def test_a_trunk_that_ends_flat_feeds_one_that_reads_vectors(name):
    """``ends_flat`` / ``reads_vectors`` are what PLE's levels are checked with: a flat output builds an MLP."""
    config = TypeAdapter(Trunk).validate_python(TRUNKS.get(name).example())
    try:
        trunk, width = create_trunk(config, (3, 16, 16))
    except MtlabError as e:
        pytest.skip(str(e))
    last = trunk.stage_info[-1].shape
    assert config.ends_flat() == (len(last) == 1)
    if config.reads_vectors():
        assert create_trunk(config, (width,))[0](torch.randn(2, width)).ndim == 2


@pytest.mark.parametrize("kind", MODEL_KINDS.names())
def test_every_model_kind_builds_its_example_runs_and_partitions_its_parameters(kind):
    example = MODEL_KINDS.get(kind).example()
    # A class registered under several names (segnet, segnet_mtan) gives one example, built under each name.
    model_config = TypeAdapter(ModelConfig).validate_python({**example.options, "kind": kind})
    assert type(model_config) is MODEL_KINDS.get(kind)
    shape = example.input_shape
    try:
        model = model_config.build(example.tasks, shape)
    except MtlabError as e:  # a trunk from an optional library that cannot be imported here
        pytest.skip(str(e))
    assert isinstance(model, MultiTaskNet)
    model.eval()
    out = model(example.inputs(2) if example.inputs is not None else torch.randn(2, *shape))
    assert list(out) == list(example.tasks) == model.task_names
    for task, outputs in out.items():
        assert outputs.shape[:2] == (2, example.tasks[task].outputs)
    assert_partition(model)
    assert model_config.sharing_label()
    for trunk in model_config.trunk_configs():
        assert trunk.type in TRUNKS


def test_the_headed_examples_build_trunks_through_the_trunk_registry():
    for kind in ("multitask", "cross_stitch", "mtan", "mmoe", "dselect_k", "ltb", "ple"):
        example = MODEL_KINDS.get(kind).example()
        model = TypeAdapter(ModelConfig).validate_python(example.options).build(example.tasks, example.input_shape)
        convs = [m for trunk in model.staged_trunks().values() for m in trunk.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 2 * len(model.staged_trunks())  # the cnn example's two convolutions, in every trunk


def test_build_model_names_a_task_missing_from_the_dataset():
    config = parse_config({"data": {"dataset": "fashion-mnist"}, "model": {"trunk": SMALL_MLP}})
    with pytest.raises(KeyError, match="group"):
        build_model(config, {"item": FASHION["item"]}, (1, 8, 8))


# ---------------------------------------------------------------------------------------- the parameter partition

PARTITION_CASES = {
    "shared": lambda: fashion_net(),
    "independent": lambda: fashion_net(sharing="independent"),
    "single task": lambda: fashion_net(tasks=["item"]),
    "shared, group->item": lambda: fashion_net(reuse="group->item", head={"widths": [4, 4]}),
    "independent, item->group": lambda: fashion_net(sharing="independent", reuse="item->group"),
    "independent, item->group, stop": lambda: fashion_net(
        sharing="independent", reuse={"source": "item", "target": "group", "stop_gradient": True}
    ),
    "per-task heads, bn, dropout": lambda: fashion_net(
        heads={"item": {"widths": [6, 5], "batch_norm": True, "dropout": 0.5}}, reuse="item->group"
    ),
    "pairs": lambda: pair_net(weight_sharing=False),
    "pairs, weight sharing": lambda: pair_net(weight_sharing=True),
}


@pytest.mark.parametrize("case", list(PARTITION_CASES))
def test_partition_matches_what_autograd_reaches(case):
    torch.manual_seed(0)
    model = PARTITION_CASES[case]()
    assert_partition(model)
    shape = (2, 6, 6) if case.startswith("pairs") else (1, 8, 8)
    reach = loss_reach(model, torch.randn(4, *shape))
    assert {id(p) for p in model.shared_parameters()} == {i for i, tasks in reach.items() if len(tasks) > 1}
    for task in model.task_names:
        assert {id(p) for p in model.task_parameters(task)} == {i for i, tasks in reach.items() if tasks == {task}}


def test_partition_examples():
    assert not list(fashion_net(sharing="independent").shared_parameters())
    single = fashion_net(tasks=["item"])  # one task: its trunk is its own
    assert not list(single.shared_parameters())
    assert len(list(single.task_parameters("item"))) == len(list(single.parameters()))
    # Reuse without stop_gradient: item's loss trains group's trunk and head too.
    cascade = fashion_net(sharing="independent", reuse="group->item")
    shared = {id(p) for p in cascade.shared_parameters()}
    group_own = [*cascade.trunks["group"].parameters(), *cascade.heads["group"].parameters()]
    assert shared == {id(p) for p in group_own}
    assert not list(cascade.task_parameters("group"))
    # Pairs: the branches serve a digit task and leq; the comparison head is leq's alone.
    pairs = pair_net(weight_sharing=False)
    assert {id(p) for p in pairs.task_parameters("leq")} == {id(p) for p in pairs.head.parameters()}
    assert not list(pairs.task_parameters("digit_a"))
    with pytest.raises(KeyError, match="no task 'fine'"):
        next(pairs.task_parameters("fine"))


# ------------------------------------------------------------------------------------------------------- cascades


@pytest.mark.parametrize("stop_gradient", [False, True])
def test_target_loss_reaches_source_head_unless_stop_gradient(stop_gradient):
    edge = {"source": "group", "target": "item", "stop_gradient": stop_gradient}
    model = fashion_net(reuse=edge, head={"widths": [6, 4]})
    model(torch.randn(4, 1, 8, 8))["item"].sum().backward()
    source_grads = [p.grad for p in model.heads["group"].parameters()]
    if stop_gradient:
        assert all(g is None for g in source_grads)
    else:
        assert all(g is not None for g in source_grads)
        assert any(g.abs().sum() > 0 for g in source_grads)
    assert all(p.grad is not None for p in model.heads["item"].parameters())


def test_stop_gradient_does_not_change_outputs():
    x = torch.randn(3, 1, 8, 8)
    outputs = []
    for stop in (False, True):
        torch.manual_seed(1)
        model = fashion_net(reuse={"source": "item", "target": "group", "stop_gradient": stop}).eval()
        outputs.append(model(x))
    for task in ("item", "group"):
        torch.testing.assert_close(outputs[0][task], outputs[1][task])


@pytest.mark.parametrize(("at", "joined"), [(None, 2), (0, 0), (2, 2), (3, 3), (4, 4)])
def test_reuse_widens_the_target_layer_after_at_hidden_layers(at, joined):
    widths = [9, 8, 7, 6]
    model = fashion_net(head={"widths": widths}, reuse={"source": "item", "target": "group", "at": at})
    head = model.heads["group"]
    in_widths = [block[0].in_features for block in head.hidden] + [head.out.in_features]
    expected = [8, *widths]  # trunk features 8, then the hidden widths
    expected[joined] += 10  # item's 10 logits join here
    assert in_widths == expected
    assert [b[0].in_features for b in model.heads["item"].hidden] == [8, 9, 8, 7]
    assert model(torch.randn(2, 1, 8, 8))["group"].shape == (2, 3)


def test_heads_run_sources_first_and_outputs_follow_task_order():
    model = fashion_net(tasks=["item", "group"], reuse="group->item")
    assert model.order == ["group", "item"]
    assert list(model(torch.randn(2, 1, 8, 8))) == ["item", "group"]
    model = fashion_net(tasks=["group", "item"])
    assert list(model(torch.randn(2, 1, 8, 8))) == ["group", "item"]


# ------------------------------------------------------------------------------------------------- initialisation


def test_independent_trunks_are_separate_and_separately_initialised():
    model = fashion_net(sharing="independent")
    item, group = model.trunks["item"], model.trunks["group"]
    assert item is not group
    assert not {id(p) for p in item.parameters()} & {id(p) for p in group.parameters()}
    for a, b in zip(item.parameters(), group.parameters(), strict=True):
        assert a.shape == b.shape
        assert not torch.equal(a, b)


def test_shared_trunk_is_one_module_read_by_every_head():
    model = fashion_net()
    assert list(model.staged_trunks()) == ["shared"]
    assert {model.trunk_of(t) for t in model.task_names} == {"shared"}


@pytest.mark.parametrize("build", [lambda: fashion_net(sharing="independent"), lambda: pair_net(True)])
def test_initialisation_is_determined_by_the_seed(build):
    torch.manual_seed(3)
    first = build().state_dict()
    torch.manual_seed(3)
    second = build().state_dict()
    torch.manual_seed(4)
    third = build().state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], third[k]) for k in first)


# ---------------------------------------------------------------------------------------------------------- pairs


def test_weight_sharing_uses_one_branch_for_both_images():
    model = pair_net(weight_sharing=True).eval()
    assert list(model.branches) == ["shared"]
    x = torch.randn(3, 2, 6, 6)
    out, swapped = model(x), model(x.flip(1))
    torch.testing.assert_close(out["digit_a"], swapped["digit_b"])
    torch.testing.assert_close(out["digit_b"], swapped["digit_a"])
    assert list(pair_net(weight_sharing=False).branches) == ["a", "b"]


def test_pair_outputs_follow_configured_task_order():
    config = parse_config(
        {
            "data": {"dataset": "mnist-pairs"},
            "tasks": ["digit_b", "leq", "digit_a"],
            "model": {"kind": "pairs", "branch": SMALL_MLP},
        }
    )
    out = build_model(config, PAIRS, (2, 6, 6))(torch.randn(2, 2, 6, 6))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"digit_b": (2, 10), "leq": (2, 2), "digit_a": (2, 10)}
    assert list(out) == ["digit_b", "leq", "digit_a"]


def test_pair_model_needs_two_channel_input():
    config = parse_config({"data": {"dataset": "mnist-pairs"}, "model": {"kind": "pairs", "branch": SMALL_MLP}})
    with pytest.raises(ValueError, match="2 channels"):
        build_model(config, PAIRS, (1, 14, 14))


# ------------------------------------------------------------------------------------------- random configurations


def conv_leaves_pixels(shape: tuple[int, int, int], layers: list[ConvLayer]) -> bool:
    """Oracle independent of the model code: let torch itself run the convolutions and poolings on a dummy image."""
    x = torch.zeros(1, 1, *shape[1:])
    try:
        for layer in layers:
            x = F.conv2d(x, torch.zeros(1, 1, layer.kernel, layer.kernel), stride=layer.stride, padding=layer.padding)
            if layer.pool > 1:
                x = F.max_pool2d(x, layer.pool)
    except RuntimeError:
        return False
    return x.numel() > 0


widths = st.lists(st.integers(1, 6), max_size=3)
dense_options = {"dropout": st.sampled_from([0.0, 0.5]), "batch_norm": st.booleans()}
conv_layers = st.fixed_dictionaries(
    {
        "filters": st.integers(1, 4),
        "kernel": st.integers(1, 4),
        "stride": st.integers(1, 2),
        "padding": st.sampled_from(["same", "valid", 0, 1, 2]),
        "pool": st.integers(1, 3),
        "batch_norm": st.booleans(),
    }
).map(lambda layer: {**layer, "stride": 1} if layer["padding"] == "same" else layer)
trunks = st.one_of(
    st.fixed_dictionaries({"type": st.just("mlp"), "widths": widths, **dense_options}),
    st.fixed_dictionaries(
        {"type": st.just("cnn"), "conv": st.lists(conv_layers, min_size=1, max_size=3), "dense": widths}
    ),
)


@st.composite
def multitask_configs(draw) -> dict[str, Any]:
    heads = {task: draw(st.fixed_dictionaries({"widths": widths, **dense_options})) for task in ("item", "group")}
    model = {"trunk": draw(trunks), "heads": heads, "sharing": draw(st.sampled_from(["shared", "independent"]))}
    source = draw(st.sampled_from([None, "item", "group"]))
    if source is not None:
        target = "group" if source == "item" else "item"
        at = draw(st.none() | st.integers(0, len(heads[target]["widths"])))
        model["reuse"] = {"source": source, "target": target, "at": at, "stop_gradient": draw(st.booleans())}
    return {"data": {"dataset": "fashion-mnist"}, "model": model}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@settings(max_examples=40, deadline=None, database=None)
@given(raw=multitask_configs(), shape=st.tuples(st.integers(1, 3), st.integers(3, 12), st.integers(3, 12)))
def test_random_small_models_build_with_right_shapes(raw, shape):
    config = parse_config(raw)
    trunk = config.model.trunk
    collapses = trunk.type == "cnn" and not conv_leaves_pixels(shape, trunk.conv)
    event(f"{trunk.type}, collapses={collapses}")
    if collapses:
        with pytest.raises(ConfigError, match=r"conv\[\d\]: .* leave no pixels"):
            build_model(config, FASHION, shape)
        return
    model = build_model(config, FASHION, shape)
    out = model(torch.randn(2, *shape))
    assert {task: tuple(logits.shape) for task, logits in out.items()} == {"item": (2, 10), "group": (2, 3)}
    assert_partition(model)


def test_build_model_puts_a_scheduled_network_in_its_last_epochs_state():
    """A kind builds from its own options only; the run's length reaches a scheduled network (LTB's temperature)
    through ``start_epoch``, which build_model calls with the run's last epoch (a net built outside a run)."""
    from mtlab.models.ltb import ltb_schedule

    raw = {"data": {"dataset": "fashion-mnist"}, "model": {"kind": "ltb", "trunk": {"type": "mlp", "widths": [4, 4]}}}
    config = parse_config({**raw, "train": {"epochs": 50}})
    model = build_model(config, FASHION, (1, 8, 8))
    assert [(c.warm_up, c.temperature) for c in model.choices] == [ltb_schedule(config.model, 50, 50)]
