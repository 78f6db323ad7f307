"""The ``mpnn`` model kind against an independent PyTorch Geometric build of Nash-MTL's QM9 network."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from pydantic import TypeAdapter
from torch import nn

from mtlab.config.schema import ModelConfig
from mtlab.data.molecules import MoleculeLayout, pack
from mtlab.errors import ConfigError, MtlabError
from mtlab.models.mpnn import EXAMPLE_TASKS, Mpnn, random_molecules
from mtlab.train.replicas import SingleReplica, parameter_views

pytest.importorskip("torch_geometric")
import torch_geometric.transforms as T
from torch_geometric.data import Batch, Data
from torch_geometric.nn import NNConv, Set2Set
from torch_geometric.utils import remove_self_loops

pytestmark = pytest.mark.usefixtures("one_thread")

LAYOUT = MoleculeLayout(slots=9, features=11, bond_types=4)
DIM = 16


def molecules(count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Random molecules as a dataset stores them: atoms' features and positions, each bond once per direction."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        n = int(torch.randint(1, LAYOUT.slots + 1, (1,), generator=g))
        pairs = torch.triu(torch.rand(n, n, generator=g) < 0.4, diagonal=1).nonzero().T
        kind = torch.randint(0, LAYOUT.bond_types, (pairs.shape[1],), generator=g)
        out.append(
            {
                "x": torch.randn(n, LAYOUT.features, generator=g),
                "pos": 2 * torch.randn(n, 3, generator=g),
                "edge_index": torch.cat([pairs, pairs.flip(0)], dim=1),
                "edge_type": torch.cat([kind, kind]),
            }
        )
    return out


def packed(mols: list[dict[str, torch.Tensor]], layout: MoleculeLayout = LAYOUT) -> torch.Tensor:
    return pack(
        layout,
        torch.tensor([m["x"].shape[0] for m in mols]),
        torch.cat([m["x"] for m in mols]),
        torch.cat([m["pos"] for m in mols]),
        torch.cat([m["edge_index"] for m in mols], dim=1),
        torch.cat([m["edge_type"] for m in mols]),
        torch.tensor([m["edge_index"].shape[1] for m in mols]),
    )


class Complete:
    """Every ordered pair of distinct atoms, bonded pairs keeping their features (as Nash-MTL's utils.Complete)."""

    def __call__(self, data: Data) -> Data:
        n = data.num_nodes
        full = torch.stack([torch.arange(n).repeat_interleave(n), torch.arange(n).repeat(n)])
        attr = data.edge_attr.new_zeros(n * n, data.edge_attr.shape[1])
        attr[data.edge_index[0] * n + data.edge_index[1]] = data.edge_attr
        data.edge_index, data.edge_attr = remove_self_loops(full, attr)
        return data


class ReferenceNet(nn.Module):
    """Nash-MTL's QM9 network, written from their description: lin0, 3 x (NNConv, GRU), Set2Set, lin1, heads."""

    def __init__(self, tasks: int, features: int, dim: int):
        super().__init__()
        self.lin0 = nn.Linear(features, dim)
        self.conv = NNConv(
            dim, dim, nn.Sequential(nn.Linear(5, 128), nn.ReLU(), nn.Linear(128, dim * dim)), aggr="mean"
        )
        self.gru = nn.GRU(dim, dim)
        self.set2set = Set2Set(dim, processing_steps=3)
        self.lin1 = nn.Linear(2 * dim, dim)
        self.heads = nn.ModuleList([nn.Linear(dim, 1) for _ in range(tasks)])

    def forward(self, data: Data) -> torch.Tensor:
        out = F.relu(self.lin0(data.x))
        h = out.unsqueeze(0)
        for _ in range(3):
            m = F.relu(self.conv(out, data.edge_index, data.edge_attr))
            out, h = self.gru(m.unsqueeze(0), h)
            out = out.squeeze(0)
        features = F.relu(self.lin1(self.set2set(out, data.batch)))
        return torch.cat([head(features) for head in self.heads], dim=1)


def build(layout: MoleculeLayout = LAYOUT, **options) -> Mpnn:
    config = TypeAdapter(ModelConfig).validate_python({"kind": "mpnn", "dim": DIM, **options})
    return config.build(EXAMPLE_TASKS, layout.shape)


def test_the_kind_computes_what_pytorch_geometric_computes_on_the_complete_graphs():
    torch.manual_seed(0)
    model = build().eval()
    reference = ReferenceNet(len(EXAMPLE_TASKS), LAYOUT.features, DIM).eval()
    names = list(EXAMPLE_TASKS)
    mapped = {}
    for key, value in model.state_dict().items():
        if key.startswith("trunk."):
            mapped[key.removeprefix("trunk.")] = value
        else:
            _, task, what = key.split(".")
            mapped[f"heads.{names.index(task)}.{what}"] = value
    reference.load_state_dict(mapped)  # strict: every parameter of either has its counterpart
    mols = molecules(12, seed=1)
    transform = T.Compose([Complete(), T.Distance(norm=False)])
    graphs = [
        transform(
            Data(
                x=m["x"],
                pos=m["pos"],
                edge_index=m["edge_index"],
                edge_attr=F.one_hot(m["edge_type"], LAYOUT.bond_types).float(),
            )
        )
        for m in mols
    ]
    assert graphs[0].edge_attr.shape[1] == LAYOUT.bond_types + 1
    expected = reference(Batch.from_data_list(graphs))  # (B, T)
    out = model(packed(mols))
    assert list(out) == names
    for t, task in enumerate(names):
        assert out[task].shape == (len(mols), 1)
        torch.testing.assert_close(out[task][:, 0], expected[:, t], atol=1e-5, rtol=1e-5)
    # The same gradients: the edge network, run once and reused by the 3 steps, gets what NNConv's 3 runs give it.
    (torch.stack([out[t][:, 0] for t in names], 1) * torch.arange(1.0, 3.0)).sum().backward()
    (expected * torch.arange(1.0, 3.0)).sum().backward()
    grads = dict(reference.named_parameters())
    for key, parameter in model.named_parameters():
        if key.startswith("trunk."):
            theirs = grads[key.removeprefix("trunk.")]
        else:
            _, task, what = key.split(".")
            theirs = grads[f"heads.{names.index(task)}.{what}"]
        torch.testing.assert_close(parameter.grad, theirs.grad, atol=1e-5, rtol=1e-4, msg=key)


def test_permuting_molecules_permutes_outputs_and_padding_carries_nothing():
    torch.manual_seed(0)
    model = build().eval()
    mols = molecules(10, seed=2)
    x = packed(mols)
    perm = torch.randperm(len(mols))
    with torch.no_grad():
        out, permuted = model(x), model(x[perm])
        for task in out:
            torch.testing.assert_close(permuted[task], out[task][perm])
        # Garbage in every padding slot (its flag stays 0) and in the bond columns of the slots past each molecule.
        noisy = x.clone()
        atoms = x[:, :, 0].sum(1).long()
        bond_columns = 1 + LAYOUT.features + 3
        for b, n in enumerate(atoms.tolist()):
            noisy[b, n:, 1:] = torch.randn(LAYOUT.slots - n, LAYOUT.width - 1)
            noisy[b, :n, bond_columns + n :] = torch.randn(n, LAYOUT.slots - n)
        for task, value in model(noisy).items():
            torch.testing.assert_close(value, out[task])
        # More slots per molecule: the same parameters, the same outputs.
        wide = MoleculeLayout(slots=13, features=LAYOUT.features, bond_types=LAYOUT.bond_types)
        wider = build(wide).eval()
        wider.load_state_dict(model.state_dict())
        for task, value in wider(packed(mols, wide)).items():
            torch.testing.assert_close(value, out[task])
        # A molecule-less row still gets its outputs (the Set2Set readout is sized by the batch).
        empty = torch.cat([x[:3], torch.zeros(1, *LAYOUT.shape)])
        for task, value in model(empty).items():
            assert value.shape == (4, 1)
            torch.testing.assert_close(value[:3], out[task][:3])


def test_the_trunk_is_shared_the_heads_are_owned_and_lin1_is_the_last_shared_layer():
    model = build()
    trunk = {id(p) for p in model.trunk.parameters()}
    assert {id(p) for p in model.shared_parameters()} == trunk
    for task in EXAMPLE_TASKS:
        assert {id(p) for p in model.task_parameters(task)} == {id(p) for p in model.heads[task].parameters()}
    for part in ("lin0", "conv", "gru", "set2set", "lin1"):
        assert any(True for _ in getattr(model.trunk, part).parameters())
    views = parameter_views(model, SingleReplica(model))
    assert {id(p) for p in views.last_shared} == {id(model.trunk.lin1.weight), id(model.trunk.lin1.bias)}
    assert {id(p) for p in views.below_representation} == trunk
    assert model.representation() == ("shared", "trunk")
    z = model.features(packed(molecules(3, seed=3)))["shared"]
    assert z.shape == (3, DIM)
    assert (z >= 0).all()  # after lin1's ReLU


def test_every_shared_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = build().train()
    out = model(packed(molecules(8, seed=4)))
    sum(value.square().sum() for value in out.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_seeds_are_not_stacked_and_say_why_in_one_line():
    config = TypeAdapter(ModelConfig).validate_python({"kind": "mpnn"})
    assert not config.stackable()
    assert config.dense_only()  # never channels-last
    assert config.trunk_configs() == []
    problem = build().stack_problem()
    assert isinstance(problem, str)
    assert problem
    assert "\n" not in problem
    assert "vmap" in problem


def test_the_defaults_are_nash_mtls():
    config = TypeAdapter(ModelConfig).validate_python({"kind": "mpnn"})
    defaults = (config.dim, config.message_steps, config.set2set_steps, config.edge_hidden, config.bond_types)
    assert defaults == (64, 3, 3, 128, 4)
    model = config.build(EXAMPLE_TASKS, LAYOUT.shape)
    assert model.trunk.conv.nn[0].in_features == 5
    assert model.trunk.conv.nn[2].out_features == 64 * 64
    assert model.trunk.set2set.processing_steps == 3
    assert model(random_molecules(2))["mu"].shape == (2, 1)


def test_inputs_that_are_not_padded_molecules_are_a_config_error():
    config = TypeAdapter(ModelConfig).validate_python({"kind": "mpnn"})
    with pytest.raises(ConfigError, match=r"model\.kind: mpnn reads padded molecules"):
        config.build(EXAMPLE_TASKS, (1, 28, 28))


def test_a_missing_pytorch_geometric_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_geometric.nn", None)  # import torch_geometric.nn now raises
    with pytest.raises(MtlabError, match=r"pip install 'mtlab\[graph\]'"):
        build()


def test_importing_mtlab_and_its_config_schema_leaves_pytorch_geometric_unimported():
    code = (
        "import sys, mtlab, mtlab.config\n"
        "from mtlab.config.base import MODEL_KINDS, shared_unions\n"
        "MODEL_KINDS.get('mpnn'); shared_unions()\n"
        "assert 'torch_geometric' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("method", "options"), [("gradnorm", {}), ("nash_mtl", {"gradients": "representation"}), ("upgrad", {})]
)
def test_a_few_weighted_steps_train_it(method, options):
    """GradNorm reads lin1 as the last shared layer; Nash-MTL differentiates the shared representation z."""
    import mtlab

    torch.manual_seed(0)
    model = build().train()
    x = packed(molecules(16, seed=5))
    y = {t: torch.randn(16, 1) for t in EXAMPLE_TASKS}
    views = parameter_views(model, SingleReplica(model))
    weighting = mtlab.Weighting(
        method,
        tasks=list(EXAMPLE_TASKS),
        shared=list(model.shared_parameters()),
        last_shared=views.last_shared,
        **options,
    )
    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()], lr=1e-3)
    before = [p.detach().clone() for p in model.trunk.parameters()]
    for _ in range(3):
        optimizer.zero_grad()
        features = model.features(x)
        out = model.forward_heads(features)
        losses = {t: F.mse_loss(out[t], y[t]) for t in EXAMPLE_TASKS}
        if options.get("gradients") == "representation":
            weighting.backward(losses, features=features["shared"])
        else:
            weighting.backward(losses)
        optimizer.step()
        weighting.after_step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(not torch.equal(p, q) for p, q in zip(model.trunk.parameters(), before, strict=True))
