"""Molecules as fixed-size tensors: the graph layout every molecular dataset gives and every graph model reads.

mtlab's data path (:class:`~mtlab.data.dataset.Split`, :class:`~mtlab.data.batches.ReplicaBatches`, the
validation carving, the subsets) moves whole splits as one tensor with one row per example, gathered per batch in a
single indexing operation. A molecule fits that path padded to the largest molecule of its dataset (QM9: 29 atoms,
hydrogens included), one row of ``A`` atom slots:

    example (A, 4 + F + A) float32, for slot i:
        [0]             1.0 when slot i holds an atom, else 0.0 (atoms fill slots 0 .. n-1, in the file's order)
        [1 : 1+F]       the atom's F node features (QM9, as PyTorch Geometric stores them: one-hot H C N O F,
                        atomic number, aromatic, sp, sp2, sp3, number of bonded hydrogens - F = 11)
        [1+F : 4+F]     the atom's position (x, y, z; Å in QM9)
        [4+F : 4+F+A]   the bond from atom i to the atom of slot j: 0 none, 1 + b a bond of type b (QM9: single,
                        double, triple, aromatic)

so a batch is (B, A, 4 + F + A). :func:`unpack` turns it back into the sparse batch a message-passing network reads
(PyTorch Geometric's convention: node rows of every molecule one after another, ``edge_index`` (2, E), ``batch``
(N,)): the complete directed graph of each molecule without self-loops, each edge carrying its bond type one-hot
(zeros where the atoms are not bonded) and the distance between the two atoms - what Nash-MTL's and FAMO's QM9
experiments build with their ``Complete`` and ``Distance(norm=False)`` transforms (Gilmer et al., ICML 2017, use the
same complete graph). Stored as float32, the bond codes 0-4 and the 0/1 flags are exact.

The inputs are never standardised (``data.normalize: false``): a per-slot statistic would mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

POSITION = 3
"""Coordinates per atom."""


@dataclass(frozen=True)
class MoleculeLayout:
    """The sizes of one padded molecule: ``slots`` atoms at most (A), ``features`` per atom (F) and ``bond_types``
    bond codes besides 'none'."""

    slots: int
    features: int
    bond_types: int

    @property
    def width(self) -> int:
        """Columns per atom slot: 1 + F + 3 + A."""
        return 1 + self.features + POSITION + self.slots

    @property
    def shape(self) -> tuple[int, int]:
        """One example's shape, (A, 1 + F + 3 + A) - the dataset's ``input_shape``."""
        return (self.slots, self.width)

    @classmethod
    def of(cls, input_shape: tuple[int, ...], bond_types: int) -> MoleculeLayout:
        """The layout of examples shaped ``input_shape`` (A, W): F = W - 4 - A."""
        if len(input_shape) != 2 or input_shape[1] < input_shape[0] + 1 + POSITION:
            raise ValueError(
                f"inputs of shape {tuple(input_shape)} are not padded molecules (A atom slots, 1 + F + 3 + A columns)"
            )
        slots, width = input_shape
        return cls(slots, width - 1 - POSITION - slots, bond_types)


@dataclass(frozen=True)
class GraphBatch:
    """A batch of molecules as sparse graphs (PyTorch Geometric's convention).

    ``x`` (N, F) node features, ``pos`` (N, 3), ``edge_index`` (2, E) long (row 0 the source atom, row 1 the
    target), ``edge_attr`` (E, bond_types + 1) - the bond one-hot then the source-target distance - and ``batch``
    (N,) long, the molecule of each node (0 .. B-1); ``molecules`` = B."""

    x: Tensor
    pos: Tensor
    edge_index: Tensor
    edge_attr: Tensor
    batch: Tensor
    molecules: int


def pack(
    layout: MoleculeLayout,
    atoms: Tensor,
    x: Tensor,
    pos: Tensor,
    edge_index: Tensor,
    edge_type: Tensor,
    bonds: Tensor,
) -> Tensor:
    """Molecules stored one after another -> (M, A, 1 + F + 3 + A) float32.

    ``atoms`` (M,) long: atoms per molecule; ``x`` (sum atoms, F) and ``pos`` (sum atoms, 3): their rows in order;
    ``edge_index`` (2, sum bonds) long: each bond's two atoms as indices *within* its molecule (PyTorch Geometric's
    stored layout); ``edge_type`` (sum bonds,) long in 0 .. bond_types - 1; ``bonds`` (M,) long: edges per molecule.
    A molecule of more than ``layout.slots`` atoms raises ``ValueError``.
    """
    m = atoms.shape[0]
    if m and int(atoms.max()) > layout.slots:
        worst = int(atoms.argmax())
        raise ValueError(f"molecule {worst} has {int(atoms.max())} atoms; the layout holds {layout.slots}")
    if edge_type.numel() and (int(edge_type.min()) < 0 or int(edge_type.max()) >= layout.bond_types):
        raise ValueError(f"bond types must lie in 0 .. {layout.bond_types - 1}")
    out = torch.zeros(m, layout.slots, layout.width, dtype=torch.float32)
    molecule = torch.repeat_interleave(torch.arange(m), atoms)  # (sum atoms,)
    first = torch.cumsum(atoms, 0) - atoms  # (M,) row of each molecule's first atom
    slot = torch.arange(molecule.shape[0]) - first[molecule]  # (sum atoms,)
    out[molecule, slot, 0] = 1.0
    out[molecule, slot, 1 : 1 + layout.features] = x.float()
    out[molecule, slot, 1 + layout.features : 1 + layout.features + POSITION] = pos.float()
    edge_molecule = torch.repeat_interleave(torch.arange(m), bonds)  # (sum bonds,)
    source, target = edge_index[0], edge_index[1]
    out[edge_molecule, source, 1 + layout.features + POSITION + target] = (edge_type + 1).float()
    return out


def unpack(batch: Tensor, layout: MoleculeLayout) -> GraphBatch:
    """Padded molecules (B, A, 1 + F + 3 + A) -> their complete graphs (see the module docstring)."""
    b, a, _ = batch.shape
    present = batch[:, :, 0] > 0.5  # (B, A)
    node_molecule, node_slot = present.nonzero(as_tuple=True)  # (N,), molecule-major: PyG's node order
    features = batch[node_molecule, node_slot, 1 : 1 + layout.features]  # (N, F)
    pos = batch[node_molecule, node_slot, 1 + layout.features : 1 + layout.features + POSITION]  # (N, 3)
    node_id = torch.full((b, a), -1, dtype=torch.long, device=batch.device)
    node_id[node_molecule, node_slot] = torch.arange(node_molecule.shape[0], device=batch.device)
    # Every ordered pair of distinct atoms of a molecule, row-major (i, then j): the order of their Complete().
    pairs = present[:, :, None] & present[:, None, :] & ~torch.eye(a, dtype=torch.bool, device=batch.device)
    edge_molecule, i, j = pairs.nonzero(as_tuple=True)  # (E,)
    source, target = node_id[edge_molecule, i], node_id[edge_molecule, j]
    code = batch[edge_molecule, i, 1 + layout.features + POSITION + j].round().long()  # (E,) 0 none, 1 + type
    bond = F.one_hot(code, layout.bond_types + 1)[:, 1:].to(batch.dtype)  # (E, bond_types); no bond -> zeros
    distance = (pos[source] - pos[target]).norm(dim=-1, keepdim=True)  # (E, 1): PyG's Distance(norm=False)
    return GraphBatch(
        x=features,
        pos=pos,
        edge_index=torch.stack([source, target]),
        edge_attr=torch.cat([bond, distance], dim=1),
        batch=node_molecule,
        molecules=b,
    )
