"""The ``custom`` model kind: the user's own network from a factory, checked, split into parts, stacked if it can be."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from mtlab.config.schema import RunConfig
from mtlab.errors import MtlabError, UserCodeError
from mtlab.models import build_model
from mtlab.models.custom import CustomModel, CustomNet, ParameterView
from mtlab.tasks import Task
from mtlab.train.replicas import SingleReplica, StackedReplicas, parameter_views

TASKS = {"item": Task("item", tuple("0123456789")), "group": Task("group", ("shoes", "gendered", "unisex"))}
SHAPE = (1, 4, 4)
BOTH = frozenset({"item", "group"})

HEADER = """
import torch
from torch import nn


def size(shape):
    n = 1
    for s in shape:
        n *= s
    return n
"""

TWO_HEADS = """
class TwoHeads(nn.Module):
    def __init__(self, outputs, input_shape, width):
        super().__init__()
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(size(input_shape), width), nn.ReLU())
        self.heads = nn.ModuleDict({t: nn.Linear(width, n) for t, n in outputs.items()})

    def forward(self, x):
        h = self.trunk(x)
        return {t: head(h) for t, head in self.heads.items()}


def build(task_outputs, input_shape, width=8):
    return TwoHeads(task_outputs, input_shape, width)
"""

# A scale that only item's output reads, declared shared by the module itself.
DECLARED = """
class Declared(nn.Module):
    def __init__(self, outputs, input_shape):
        super().__init__()
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(size(input_shape), 6), nn.Tanh())
        self.scale = nn.Parameter(torch.ones(1))
        self.item = nn.Linear(6, outputs["item"])
        self.group = nn.Linear(6, outputs["group"])

    def shared_parameters(self):
        yield from self.trunk.parameters()
        yield self.scale

    def forward(self, x):
        h = self.trunk(x)
        return {"item": self.item(h) * self.scale, "group": self.group(h)}


def build(task_outputs, input_shape):
    return Declared(task_outputs, input_shape)
"""

# A branch only group reads; parameters of the root module itself: one for item alone, one for both tasks.
BRANCH = """
class Branch(nn.Module):
    def __init__(self, outputs, input_shape):
        super().__init__()
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(size(input_shape), 6), nn.BatchNorm1d(6), nn.ReLU())
        self.branch = nn.Sequential(nn.Flatten(), nn.Linear(size(input_shape), 4), nn.Dropout(0.5))
        self.item = nn.Linear(6, outputs["item"])
        self.group = nn.Linear(10, outputs["group"])
        self.item_bias = nn.Parameter(torch.zeros(outputs["item"]))
        self.temperature = nn.Parameter(torch.ones(1))

    def forward(self, x):
        h = self.trunk(x)
        group = self.group(torch.cat([h, self.branch(x)], dim=1))
        return {"item": (self.item(h) + self.item_bias) / self.temperature, "group": group / self.temperature}


def build(task_outputs, input_shape):
    return Branch(task_outputs, input_shape)
"""

UNSTACKABLE = {
    ".item()": "if h.sum().item() > 0:\n            h = h * 2",
    "data-dependent control flow": "if (h > 0).any():\n            h = h * 2",
}

WITH_BRANCH_IN_FORWARD = """
class Unstackable(nn.Module):
    def __init__(self, outputs, input_shape):
        super().__init__()
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(size(input_shape), 5))
        self.heads = nn.ModuleDict({{t: nn.Linear(5, n) for t, n in outputs.items()}})

    def forward(self, x):
        h = self.trunk(x)
        {branch}
        return {{t: head(h) for t, head in self.heads.items()}}


def build(task_outputs, input_shape):
    return Unstackable(task_outputs, input_shape)
"""


def write(folder: Path, body: str, name: str = "nets.py") -> Path:
    path = folder / name
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def config(factory: str, tasks: list[str] | None = None, **model) -> RunConfig:
    raw = {"data": {"dataset": "fashion-mnist-sample"}, "model": {"kind": "custom", "factory": factory, **model}}
    if tasks is not None:
        raw["tasks"] = tasks
    return RunConfig.model_validate(raw)


def build(path: Path, attr: str = "build", shape=SHAPE, **model) -> CustomNet:
    net = build_model(config(f"{path}:{attr}", **model), TASKS, shape)
    assert isinstance(net, CustomNet)
    return net


def loss_reach(model, x) -> dict[int, set[str]]:
    params = list(model.parameters())
    reach: dict[int, set[str]] = {id(p): set() for p in params}
    for task, out in model(x).items():
        grads = torch.autograd.grad(out.sum(), params, retain_graph=True, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            if g is not None:
                reach[id(p)].add(task)
    return reach


def ids(params) -> set[int]:
    return {id(p) for p in params}


def assert_partition(model) -> None:
    grouped = [id(p) for p in model.shared_parameters()]
    for task in model.task_names:
        grouped += [id(p) for p in model.task_parameters(task)]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())


def parts_by_name(model) -> dict[tuple[str, frozenset[str]], object]:
    return {(part.name, part.tasks): part.module for part in model.parts()}


# --------------------------------------------------------------------------------------------------- config


def test_factory_forms_are_checked_when_the_config_is_read():
    assert config("pkg.nets:build").model.factory == "pkg.nets:build"
    assert config("nets/my_net.py:Net.create").model.factory == "nets/my_net.py:Net.create"
    for bad in ("pkg.nets", "pkg.nets:", ":build", "pkg nets:build", "my-nets:build", "pkg.nets:build()"):
        with pytest.raises(ValidationError, match=r"package\.module:function"):
            config(bad)


def test_a_custom_model_has_no_trunk_and_says_what_it_shares():
    model = config("pkg.nets:build", options={"width": 3}).model
    assert isinstance(model, CustomModel)
    assert model.trunk_configs() == []
    assert model.dense_only() is True  # flat feature vectors are fine, inputs are not made channels-last
    assert model.sharing_label() == "custom"
    assert model.options == {"width": 3}
    assert model.stackable()
    assert not config("pkg.nets:build", stack="never").model.stackable()


def test_a_relative_factory_file_is_relative_to_the_config_file(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    (folder / "nets").mkdir(parents=True)
    write(folder / "nets", TWO_HEADS)
    model = config("nets/nets.py:build").model
    model.resolve_paths(folder)
    assert model.factory == f"{(folder / 'nets' / 'nets.py').resolve()}:build"
    model.resolve_paths(tmp_path / "elsewhere")  # absolute now: unchanged
    assert model.factory == f"{(folder / 'nets' / 'nets.py').resolve()}:build"
    dotted = config("pkg.nets:build").model
    dotted.resolve_paths(folder)
    assert dotted.factory == "pkg.nets:build"
    monkeypatch.chdir(tmp_path)  # not the config's directory: the resolved path still finds the file
    assert list(build_model(config(model.factory), TASKS, SHAPE)(torch.randn(2, *SHAPE))) == ["item", "group"]


# --------------------------------------------------------------------------------------------------- building


def test_a_two_head_mlp_shares_its_trunk_and_owns_its_heads(tmp_path):
    torch.manual_seed(0)
    net = build(write(tmp_path, TWO_HEADS), options={"width": 5})
    parts = parts_by_name(net)
    assert set(parts) == {("net.trunk", BOTH), ("net.heads.item", frozenset({"item"})),
                          ("net.heads.group", frozenset({"group"}))}  # fmt: skip
    for part in net.parts():  # whole subtrees: the part's module is the network's own submodule at its name
        assert net.get_submodule(part.name) is part.module
    assert ids(net.shared_parameters()) == ids(net.net.trunk.parameters())
    assert ids(net.task_parameters("item")) == ids(net.net.heads["item"].parameters())
    assert_partition(net)
    out = net(torch.randn(7, *SHAPE))
    assert list(out) == ["item", "group"]
    assert out["item"].shape == (7, 10)
    assert out["group"].shape == (7, 3)
    counts = net.parameter_counts()
    assert counts["shared"] == 16 * 5 + 5
    assert counts["task:item"] == 5 * 10 + 10
    assert counts["task:group"] == 18


def test_the_factory_gets_the_trained_tasks_widths_and_the_input_shape(tmp_path):
    path = write(
        tmp_path,
        TWO_HEADS + "\nSEEN = []\n\ndef spy(task_outputs, input_shape, **options):\n"
        "    SEEN.append((task_outputs, input_shape, options))\n    return build(task_outputs, input_shape)\n",
    )
    net = build_model(config(f"{path}:spy", tasks=["group"], options={"unused": 1}), TASKS, (3, 2, 2))
    module = sys.modules[type(net.net).__module__]
    assert module.SEEN == [({"group": 3}, (3, 2, 2), {"unused": 1})]
    assert not list(net.shared_parameters())  # one task owns everything
    assert ids(net.task_parameters("group")) == ids(net.parameters())


def test_a_module_can_declare_its_shared_parameters(tmp_path):
    net = build(write(tmp_path, DECLARED))
    scale = net.net.scale
    assert id(scale) in ids(net.shared_parameters())  # autograd alone would give it to item
    assert ids(net.shared_parameters()) == ids([*net.net.trunk.parameters(), scale])
    assert ids(net.task_parameters("item")) == ids(net.net.item.parameters())
    assert ids(net.task_parameters("group")) == ids(net.net.group.parameters())
    assert_partition(net)
    (view,) = [part.module for part in net.parts() if isinstance(part.module, ParameterView)]
    assert list(view.named_parameters()) == [("scale", scale)]


def test_a_task_specific_branch_and_split_root_parameters(tmp_path):
    torch.manual_seed(0)
    net = build(write(tmp_path, BRANCH))
    item, group = frozenset({"item"}), frozenset({"group"})
    parts = parts_by_name(net)
    assert set(parts) == {("net", item), ("net", BOTH), ("net.trunk", BOTH), ("net.branch", group),
                          ("net.item", item), ("net.group", group)}  # fmt: skip
    assert [n for n, _ in parts[("net", item)].named_parameters()] == ["item_bias"]
    assert [n for n, _ in parts[("net", BOTH)].named_parameters()] == ["temperature"]
    assert_partition(net)
    net.train()
    reach = loss_reach(net, torch.randn(5, *SHAPE))
    assert ids(net.shared_parameters()) == {i for i, tasks in reach.items() if len(tasks) > 1}
    for task in net.task_names:
        assert ids(net.task_parameters(task)) == {i for i, tasks in reach.items() if tasks == {task}}
    counts = net.parameter_counts()  # the root's two parts are told apart
    assert counts["net (item)"] == 10
    assert counts["net (group+item)"] == 1
    assert sum(counts[k] for k in counts if k.startswith("net")) == sum(p.numel() for p in net.parameters())


TIED = TWO_HEADS.replace(
    "        self.heads = nn.ModuleDict({t: nn.Linear(width, n) for t, n in outputs.items()})",
    "        self.heads = nn.ModuleDict({t: nn.Linear(width, n) for t, n in outputs.items()})\n"
    "        self.alias = self.heads['group']\n"
    "        self.extra = nn.Linear(width, 10)\n"
    "        self.extra.weight = self.heads['item'].weight\n",
).replace(
    "        return {t: head(h) for t, head in self.heads.items()}",
    "        return {'item': self.heads['item'](h) + self.extra(h), 'group': self.alias(h)}",
)


def test_tied_weights_and_aliased_modules_are_counted_once(tmp_path):
    net = build(write(tmp_path, TIED))
    assert_partition(net)
    parts = {part.name: [n for n, _ in part.module.named_parameters()] for part in net.parts()}
    # The tied weight belongs to its first name (heads.item); extra keeps only its bias; the alias adds nothing.
    assert parts == {"net.trunk": ["1.weight", "1.bias"], "net.heads.item": ["weight", "bias"],
                     "net.heads.group": ["weight", "bias"], "net.extra": ["bias"]}  # fmt: skip
    views = parameter_views(net, StackedReplicas([net, net]))
    assert len(views.shared) == 2
    assert {t: len(owned) for t, owned in views.owned.items()} == {"item": 3, "group": 2}


@pytest.mark.parametrize("stacked", [False, True])
def test_parameter_views_find_every_part_of_a_custom_net(tmp_path, stacked):
    net = build(write(tmp_path, BRANCH))
    replicas = StackedReplicas([net, build(write(tmp_path, BRANCH))]) if stacked else SingleReplica(net)
    views = parameter_views(net, replicas)
    k = 2 if stacked else 1
    numel = sum(p.numel() for p in views.shared)
    assert numel == k * sum(p.numel() for p in net.shared_parameters())
    for task in net.task_names:
        assert sum(p.numel() for p in views.owned[task]) == k * sum(p.numel() for p in net.task_parameters(task))
    assert views.below_representation is None  # no shared representation to split the forward at
    assert views.last_shared  # GradNorm's W: the last layer of each shared part


def test_the_probe_leaves_no_trace(tmp_path):
    body = BRANCH.replace(
        "        h = self.trunk(x)\n        group",
        "        self.calls += 1\n        h = self.trunk(x)\n        group",
    ).replace("        self.temperature = nn.Parameter(torch.ones(1))\n",
              "        self.temperature = nn.Parameter(torch.ones(1))\n"
              "        self.register_buffer('calls', torch.zeros(()))\n")  # fmt: skip
    path = write(tmp_path, body)
    torch.manual_seed(3)
    net = build(path)
    after_build = torch.rand(3)
    torch.manual_seed(3)
    module = sys.modules[type(net.net).__module__].build(dict(item=10, group=3), SHAPE)
    after_factory = torch.rand(3)
    assert torch.equal(after_build, after_factory)  # the probes drew nothing from the global generator
    assert all(
        torch.equal(a, b) for a, b in zip(net.net.state_dict().values(), module.state_dict().values(), strict=True)
    )
    assert net.training
    assert all(m.training for m in net.modules())
    assert net.net.calls.item() == 0
    bn = net.net.trunk[2]
    assert torch.equal(bn.running_mean, torch.zeros(6))
    assert bn.num_batches_tracked.item() == 0
    assert net.stack_problem(StackedReplicas) is None  # the stacking trial leaves no trace either
    assert net.net.calls.item() == 0
    assert bn.num_batches_tracked.item() == 0
    assert net.training


# ----------------------------------------------------------------------------------------------------- stacking


def test_a_plain_net_can_be_stacked(tmp_path):
    net = build(write(tmp_path, BRANCH))
    assert net.stack_problem() is None  # not tried yet
    assert net.stack_problem(StackedReplicas) is None


@pytest.mark.parametrize("case", list(UNSTACKABLE))
def test_a_net_that_vmap_cannot_run_says_why(tmp_path, case):
    net = build(write(tmp_path, WITH_BRANCH_IN_FORWARD.format(branch=UNSTACKABLE[case])))
    assert list(net(torch.randn(2, *SHAPE))) == ["item", "group"]  # a solo forward is fine
    reason = net.stack_problem(StackedReplicas)
    assert reason is not None
    assert net.stack_problem() == reason  # remembered
    assert "\n" not in reason
    assert reason.startswith("RuntimeError")
    assert "vmap" in reason or "data-dependent" in reason.lower() or "item" in reason
    with pytest.raises(RuntimeError):  # what training the seeds stacked would have run into
        StackedReplicas([net, net])(torch.randn(2, 2, *SHAPE))


def test_stack_never_forbids_stacking_without_trying(tmp_path):
    net = build(write(tmp_path, TWO_HEADS), stack="never")
    assert net.stack_problem(StackedReplicas) == "model.stack is 'never'"


# ------------------------------------------------------------------------------------------------------- errors

OUTPUT_PROBLEMS = {
    "missing task": ('{"item": self.a(h)}', r"lack task 'group' \(expected width 3\)"),
    "wrong width": ('{"item": self.a(h), "group": self.a(h)}', r"'group' has shape \(3, 10\).*expected \(batch, 3\)"),
    "extra output": ('{"item": self.a(h), "group": self.b(h), "color": self.b(h)}', r"\['color'\].*not trained tasks"),
    "not a dict": ("self.a(h)", r"returned a Tensor; it must return a dict"),
    "1-d output": ('{"item": self.a(h), "group": self.b(h)[:, 0]}', r"'group' has shape \(3,\).*width 3"),
    "integer output": ('{"item": self.a(h), "group": self.b(h).long()}', r"'group' is torch.int64"),
}


@pytest.mark.parametrize("case", list(OUTPUT_PROBLEMS))
def test_outputs_that_do_not_match_the_tasks_are_clear_errors(tmp_path, case):
    returned, message = OUTPUT_PROBLEMS[case]
    path = write(
        tmp_path,
        f"""
        class Wrong(nn.Module):
            def __init__(self, input_shape):
                super().__init__()
                self.a = nn.Linear(size(input_shape), 10)
                self.b = nn.Linear(size(input_shape), 3)

            def forward(self, x):
                h = x.flatten(1)
                return {returned}


        def build(task_outputs, input_shape):
            return Wrong(input_shape)
        """,
    )
    with pytest.raises(MtlabError, match=message) as error:
        build(path)
    assert f"model.factory {path}:build" in str(error.value)


def test_an_unused_parameter_is_an_error_naming_it(tmp_path):
    path = write(tmp_path, TWO_HEADS.replace(
        "        self.heads = ", "        self.spare = nn.Linear(3, 3)\n        self.heads = "))  # fmt: skip
    with pytest.raises(MtlabError, match=r"parameters spare.weight, spare.bias, so they would never train"):
        build(path)


def test_a_frozen_parameter_is_an_error(tmp_path):
    path = write(tmp_path, TWO_HEADS.replace(
        "    return TwoHeads(task_outputs, input_shape, width)",
        "    net = TwoHeads(task_outputs, input_shape, width)\n"
        "    net.trunk[1].weight.requires_grad_(False)\n    return net"))  # fmt: skip
    with pytest.raises(MtlabError, match=r"parameters trunk.1.weight do not require grad.*register_buffer"):
        build(path)


def test_factory_problems_name_the_factory(tmp_path, monkeypatch):
    path = write(tmp_path, TWO_HEADS + "\nNOT_CALLABLE = 3\n\ndef not_a_module(task_outputs, input_shape):\n"
                 "    return {}\n")  # fmt: skip
    with pytest.raises(MtlabError, match=r"no file .*missing.py \(a relative path is relative to the config"):
        build(tmp_path / "missing.py")
    with pytest.raises(MtlabError, match=r"nets.py has no attribute 'nope'"):
        build(path, "nope")
    with pytest.raises(MtlabError, match=r"NOT_CALLABLE is a int, not a function"):
        build(path, "NOT_CALLABLE")
    with pytest.raises(MtlabError, match=r"returned a dict, not a torch.nn.Module"):
        build(path, "not_a_module")
    with pytest.raises(MtlabError, match=r"cannot be called as build\(task_outputs, input_shape, \*\*options\).*widht"):
        build(path, options={"widht": 3})
    with pytest.raises(MtlabError, match=r"no module 'surely_not_a_module_xyz' on the Python path"):
        build_model(config("surely_not_a_module_xyz.nets:build"), TASKS, SHAPE)


def test_an_error_inside_the_factory_names_the_factory_and_keeps_only_the_users_frames(tmp_path):
    path = write(tmp_path, "def build(task_outputs, input_shape):\n    raise ValueError('bad width')\n")
    with pytest.raises(UserCodeError) as error:
        build(path)
    assert str(error.value) == f"model.factory {path}:build with options {{}} raised ValueError: bad width"
    assert isinstance(error.value.__cause__, ValueError)
    line = HEADER.count("\n") + 2
    assert error.value.frames == f'  File "{path}", line {line}, in build\n    raise ValueError(\'bad width\')\n'
    # The file itself raising when it is run, and the network's forward raising on the probe batch.
    broken = write(tmp_path, "WIDTH = 1 / 0\n", "broken.py")
    with pytest.raises(UserCodeError, match=rf"^model.factory {broken}:build: running {broken} raised "
                                            r"ZeroDivisionError: division by zero$") as error:  # fmt: skip
        build(broken)
    assert error.value.frames.startswith(f'  File "{broken}", line {line - 1}, in <module>')
    forward = "class Bad(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    forward += "        self.w = torch.nn.Linear(3, 3)\n    def forward(self, x):\n        return self.w(x)\n"
    forward += "def build(task_outputs, input_shape):\n    return Bad()\n"
    with pytest.raises(UserCodeError, match=r"the network's forward on a random batch \(3, 1, 4, 4\) raised "
                                            r"RuntimeError: mat1 and mat2") as error:  # fmt: skip
        build(write(tmp_path, forward, "bad_forward.py"))
    assert error.value.frames.count('  File "') == 1  # the user's forward; neither torch's frames nor mtlab's
    assert "bad_forward.py" in error.value.frames


def test_a_dotted_module_path_is_imported(tmp_path, monkeypatch):
    package = tmp_path / "mtlab_test_custom_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write(package, TWO_HEADS, "nets.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("mtlab_test_custom_pkg", "mtlab_test_custom_pkg.nets"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    torch.manual_seed(0)
    net = build_model(config("mtlab_test_custom_pkg.nets:build", options={"width": 4}), TASKS, SHAPE)
    assert type(net.net).__module__ == "mtlab_test_custom_pkg.nets"
    assert ids(net.shared_parameters()) == ids(net.net.trunk.parameters())
    with pytest.raises(MtlabError, match=r"mtlab_test_custom_pkg.nets has no attribute 'TwoHeads2'"):
        build_model(config("mtlab_test_custom_pkg.nets:TwoHeads2"), TASKS, SHAPE)


def test_the_global_seed_decides_the_initialisation(tmp_path):
    path = write(tmp_path, TWO_HEADS)
    nets = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        nets.append(build(path))
    same = [torch.equal(a, b) for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True)]
    other = [torch.equal(a, b) for a, b in zip(nets[0].parameters(), nets[2].parameters(), strict=True)]
    assert all(same)
    assert not any(other)


# ---------------------------------------------------------------------------------------------------- training

RUN_YAML = """
data: {dataset: fashion-mnist-sample, train_subset: 200, test_subset: 100}
model: {kind: custom, factory: "nets/nets.py:build", options: {width: 8}}
train: {epochs: 1, batch_size: 50}
"""


def custom_run(tmp_path: Path, overrides: list[str]) -> RunConfig:
    from mtlab.config.load import load_config

    (tmp_path / "nets").mkdir(exist_ok=True)
    write(tmp_path / "nets", TWO_HEADS)
    (tmp_path / "run.yaml").write_text(RUN_YAML)
    return load_config(tmp_path / "run.yaml", overrides)


def test_the_config_loader_resolves_the_factory_file(tmp_path):
    config = custom_run(tmp_path, [])
    assert config.model.factory == f"{(tmp_path / 'nets' / 'nets.py').resolve()}:build"


@pytest.mark.parametrize("method", ["fixed", "pcgrad"])
def test_a_custom_model_trains_one_epoch(tmp_path, method, monkeypatch):
    from mtlab.train.run import train_run

    monkeypatch.chdir(tmp_path.parent)  # the factory file is found through the config's directory, not the cwd
    outcome = train_run(custom_run(tmp_path, [f"loss.method={method}"]), tmp_path / "out")
    assert isinstance(outcome.model, CustomNet)
    assert len(outcome.result.history) == 1
    for task in ("item", "group"):
        assert 0 <= outcome.result.test[f"test.{task}.acc"] <= 1
    saved = (tmp_path / "out" / "config.yaml").read_text()
    assert str((tmp_path / "nets" / "nets.py").resolve()) in saved  # the run directory records the file it used


def test_stacked_seeds_of_a_custom_model_equal_their_solo_runs(tmp_path):
    from mtlab.train.run import train_runs

    configs = [custom_run(tmp_path, [f"seed={seed}"]) for seed in (0, 1)]
    stacked = train_runs(configs, [None, None], stacking="always")
    solo = [train_runs([c], [None])[0] for c in configs]
    for s, o in zip(stacked, solo, strict=True):
        for key, value in o.result.test.items():
            assert s.result.test[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


RAISING = """
def check(width):
    if width % 8:
        raise ValueError(f"width {width} is not a multiple of 8")


def build(task_outputs, input_shape, width=8):
    check(width)
"""


@pytest.mark.parametrize("command", ["train", "run"])
def test_a_factory_that_raises_is_one_error_line_then_the_users_own_frames(tmp_path, command):
    import json
    import subprocess

    factory = tmp_path / "raising.py"
    factory.write_text(RAISING)
    base = {"data": {"dataset": "fashion-mnist-sample", "train_subset": 100, "test_subset": 50},
            "model": {"kind": "custom", "factory": "raising.py:build", "options": {"width": 5}},
            "train": {"epochs": 1, "batch_size": 50}}  # fmt: skip
    if command == "train":
        (tmp_path / "run.yaml").write_text(json.dumps(base))
        args = ["train", "run.yaml", "--out", "out"]
    else:
        (tmp_path / "study.yaml").write_text(json.dumps({"name": "raising", "seeds": 1, "base": base}))
        args = ["run", "study.yaml", "--out", "out", "--no-report"]
    done = subprocess.run([sys.executable, "-m", "mtlab", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr
    first, *frames = done.stderr.splitlines()
    assert first == (f"mtlab: error: model.factory {factory}:build with options {{'width': 5}} raised ValueError: "
                     "width 5 is not a multiple of 8")  # fmt: skip
    files = [line for line in frames if line.startswith("  File ")]
    assert files == [f'  File "{factory}", line 8, in build', f'  File "{factory}", line 4, in check']
    assert not any(line.startswith("mtlab: error:") or "Traceback" in line for line in frames)
    assert not (tmp_path / "out").exists()
