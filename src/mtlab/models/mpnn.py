"""Model kind ``mpnn``: the message-passing neural network of Gilmer et al. (ICML 2017) for molecules, as the QM9
experiments of Nash-MTL (Navon et al., ICML 2022, ``experiments/quantum_chemistry/models.py``) build it - FAMO and
LibMTL train the same network.

It reads padded molecules (:mod:`mtlab.data.molecules`), a batch (B, A, 1 + F + 3 + A), and unpacks them to the
complete directed graph of each molecule: N atoms in all, E = sum of n (n - 1) edges, each edge carrying its bond
one-hot and the two atoms' distance, (E, bond_types + 1) = (E, 5) in QM9. With ``dim`` = 64:

    embed:    x (N, F) -> Linear(F, dim) -> ReLU                                    out (N, dim), h = out[None]
    3 steps:  m = ReLU(NNConv(out, edge_index, edge_attr)), mean over incoming edges   (N, dim)
                  the edge network Linear(5, 128) -> ReLU -> Linear(128, dim * dim) turns each edge's features
                  into a (dim, dim) matrix that multiplies the source atom's state; one NNConv for every step
              out, h = GRU(dim, dim)(m[None], h)                                      (N, dim), (1, N, dim)
    readout:  Set2Set(dim, 3 processing steps) over each molecule's atoms            (B, 2 dim)
              -> Linear(2 dim, dim) -> ReLU                                           z (B, dim): shared
    heads:    one Linear(dim, outputs) per task                                       (B, outputs)

Everything up to z is shared by the tasks, and ``lin1`` (the Linear(2 dim, dim)) is the last shared layer - what
their ``last_shared_parameters()`` gives GradNorm, and what mtlab's parameter views take as the last parameterised
layer of the shared part. z is the shared representation that MGDA-UB's and Nash-MTL's representation gradients
differentiate. Parameters keep PyTorch's (and PyTorch Geometric's) default initialisation, as in their code.

Cost: the edge network's Linear(128, dim * dim) maps every edge to its matrix - 128 dim^2 (524,288 at dim 64)
multiply-adds per edge, nearly all of the network's FLOPs. Nash-MTL's code calls NNConv at each of the 3 steps, which
runs the edge network again on the same edges each time; here it runs once and the 3 steps reuse its matrices
(:func:`edge_conditioned` computes what NNConv computes, given them): the same function and the same gradients (the
3 steps' contributions to the edge network's gradient are summed either way), a third of the edge network's cost,
and one (E, dim^2) output kept for the backward pass instead of three. The NNConv module still holds the parameters,
so they are initialised as PyTorch Geometric initialises them in their code. A batch of 120 QM9 molecules (18 atoms
on average, some 36,700 directed edges) keeps about 0.6 GB of edge matrices for the backward pass.

PyTorch Geometric (``pip install 'mtlab[graph]'``) is imported only when the network is built. Seeds cannot be
stacked into one vmapped model: each replica's batch has its own numbers of atoms and edges.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mtlab.config.base import ModelExample, ModelKind, register_model_kind
from mtlab.data.molecules import POSITION, MoleculeLayout, pack, unpack
from mtlab.errors import ConfigError, MtlabError
from mtlab.models.base import TrunkAndHeads
from mtlab.tasks import Task

if TYPE_CHECKING:
    from mtlab.config.base import TrunkOptions

EXAMPLE_TASKS = {name: Task(name, (name,), "regression") for name in ("mu", "alpha")}
EXAMPLE_LAYOUT = MoleculeLayout(slots=9, features=11, bond_types=4)


def random_molecules(count: int, layout: MoleculeLayout = EXAMPLE_LAYOUT, seed: int = 0) -> Tensor:
    """``count`` random molecules packed as ``layout`` says, (count, A, 1 + F + 3 + A): 1 to A atoms each with
    random features and positions, and a random set of bonds (each pair of atoms bonded, both ways, with
    probability 0.3, of a random type)."""
    generator = torch.Generator().manual_seed(seed)
    atoms = torch.randint(1, layout.slots + 1, (count,), generator=generator)
    total = int(atoms.sum())
    x = torch.randn(total, layout.features, generator=generator)
    pos = torch.randn(total, POSITION, generator=generator)
    edges, types, bonds = [], [], []
    for n in atoms.tolist():
        upper = torch.triu(torch.rand(n, n, generator=generator) < 0.3, diagonal=1).nonzero().T  # (2, pairs)
        kind = torch.randint(0, layout.bond_types, (upper.shape[1],), generator=generator)
        edges.append(torch.cat([upper, upper.flip(0)], dim=1))
        types.append(torch.cat([kind, kind]))
        bonds.append(2 * upper.shape[1])
    return pack(layout, atoms, x, pos, torch.cat(edges, dim=1), torch.cat(types), torch.tensor(bonds))


def graph_layers() -> tuple[type[nn.Module], type[nn.Module]]:
    """PyTorch Geometric's ``NNConv`` and ``Set2Set``, imported on first use (the optional extra ``graph``)."""
    try:
        from torch_geometric.nn import NNConv, Set2Set
    except ImportError as e:
        raise MtlabError(
            f"model.kind mpnn needs PyTorch Geometric ({e}); install it with pip install 'mtlab[graph]'"
        ) from None
    return NNConv, Set2Set


@register_model_kind
class MpnnModel(ModelKind):
    """Gilmer et al.'s MPNN on padded molecules, as Nash-MTL's QM9 experiments build it: a shared message-passing
    trunk with a Set2Set readout, one linear head per task (see :mod:`mtlab.models.mpnn`)."""

    kind: Literal["mpnn"]
    dim: int = Field(
        64, ge=1, description="Width of the atom states, the messages and the shared representation (Nash-MTL: 64)."
    )
    message_steps: int = Field(
        3, ge=1, description="Message-passing steps, all through one NNConv and one GRU (Nash-MTL: 3)."
    )
    set2set_steps: int = Field(3, ge=1, description="Processing steps of the Set2Set readout (Nash-MTL: 3).")
    edge_hidden: int = Field(
        128,
        ge=1,
        description="Hidden units of the edge network that maps an edge's features "
        "to its (dim, dim) message matrix (Nash-MTL: 128).",
    )
    bond_types: int = Field(
        4,
        ge=1,
        description="Bond types the data encodes (QM9: single, double, triple, "
        "aromatic); edge features are these one-hot plus the distance.",
    )

    @classmethod
    def example(cls) -> ModelExample:
        """Two regression targets on molecules of at most 9 atoms with QM9's 11 atom features."""
        return ModelExample(
            {"kind": "mpnn", "dim": 8, "edge_hidden": 16}, EXAMPLE_TASKS, EXAMPLE_LAYOUT.shape, random_molecules
        )

    def trunk_configs(self) -> list[TrunkOptions]:
        return []  # a fixed network, not built from an mtlab trunk: nothing for a search to vary

    def dense_only(self) -> bool:
        return True  # no image convolutions: never channels-last

    def stackable(self) -> bool:
        return False  # see Mpnn.stack_problem

    def sharing_label(self) -> str:
        return "mpnn"

    def build(self, tasks: dict[str, Task], input_shape: tuple[int, ...]) -> Mpnn:
        try:
            layout = MoleculeLayout.of(tuple(input_shape), self.bond_types)
        except ValueError as e:
            raise ConfigError(f"model.kind: mpnn reads padded molecules, but {e}") from None
        outputs = {t: task.outputs for t, task in tasks.items()}
        return Mpnn(outputs, layout, self.dim, self.message_steps, self.set2set_steps, self.edge_hidden)


def edge_conditioned(conv: nn.Module, x: Tensor, edge_index: Tensor, weight: Tensor) -> Tensor:
    """What ``conv(x, edge_index, edge_attr)`` computes - PyTorch Geometric's ``NNConv`` with mean aggregation -
    given its edge network's output ``weight`` = ``conv.nn(edge_attr)`` as (E, dim_in, dim_out):

        out_i = mean over edges (j -> i) of  x_j W_ji   +  x_i conv.lin  +  conv.bias       (N, dim_out)

    (a node with no incoming edge gets 0 for the mean, as PyG's mean aggregation). ``x`` (N, dim_in); ``edge_index``
    (2, E), row 0 the source j, row 1 the target i."""
    source, target = edge_index
    messages = torch.bmm(x[source].unsqueeze(1), weight).squeeze(1)  # (E, dim_out)
    total = messages.new_zeros(x.shape[0], messages.shape[1]).index_add_(0, target, messages)
    count = torch.bincount(target, minlength=x.shape[0]).clamp_min(1).unsqueeze(1).to(messages.dtype)  # (N, 1)
    return total / count + conv.lin(x) + conv.bias


class MpnnTrunk(nn.Module):
    """The shared part: padded molecules (B, A, 1 + F + 3 + A) -> z (B, dim); see the module docstring.

    Its layers are registered in the order they run, so ``lin1`` is the last parameterised one."""

    def __init__(self, layout: MoleculeLayout, dim: int, message_steps: int, set2set_steps: int, edge_hidden: int):
        super().__init__()
        nnconv, set2set = graph_layers()
        self.layout = layout
        self.message_steps = message_steps
        self.lin0 = nn.Linear(layout.features, dim)
        edge_net = nn.Sequential(
            nn.Linear(layout.bond_types + 1, edge_hidden), nn.ReLU(), nn.Linear(edge_hidden, dim * dim)
        )
        self.conv = nnconv(dim, dim, edge_net, aggr="mean")
        self.gru = nn.GRU(dim, dim)
        self.set2set = set2set(dim, processing_steps=set2set_steps)
        self.lin1 = nn.Linear(2 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        graph = unpack(x, self.layout)
        out = F.relu(self.lin0(graph.x))  # (N, dim)
        h = out[None]  # (1, N, dim)
        dim = out.shape[1]
        # The edge network's matrices depend on the edges alone, the same at every step: computed once, (E, dim, dim).
        weight = self.conv.nn(graph.edge_attr).view(-1, dim, dim)
        for _ in range(self.message_steps):
            m = F.relu(edge_conditioned(self.conv, out, graph.edge_index, weight))  # (N, dim)
            out, h = self.gru(m[None], h)
            out = out[0]
        pooled = self.set2set(out, graph.batch, dim_size=graph.molecules)  # (B, 2 dim); a molecule-less row: zeros
        return F.relu(self.lin1(pooled))  # (B, dim)


class Mpnn(TrunkAndHeads):
    """The trunk under ``"shared"`` and one linear head per task; every head reads the shared z (B, dim)."""

    def __init__(
        self,
        outputs: dict[str, int],
        layout: MoleculeLayout,
        dim: int,
        message_steps: int,
        set2set_steps: int,
        edge_hidden: int,
    ):
        trunk = MpnnTrunk(layout, dim, message_steps, set2set_steps, edge_hidden)
        super().__init__(trunk, {t: nn.Linear(dim, n) for t, n in outputs.items()})

    def stack_problem(self, stacked: Callable[[list[nn.Module]], nn.Module] | None = None) -> str | None:
        return (
            "each seed's batch holds different molecules, hence different numbers of atoms and edges, "
            "and vmap needs equal shapes"
        )
