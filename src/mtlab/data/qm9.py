"""``qm9``: QM9's molecular properties as regression tasks, on PyTorch Geometric's processed QM9 (Ramakrishnan,
Dral, Rupp & von Lilienfeld, "Quantum chemistry structures and properties of 134 kilo molecules", Scientific Data
2014; the multi-task protocol of Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022 - Nash-MTL).

Files: the folder ``qm9/`` (or ``QM9/``) that ``torch_geometric.datasets.QM9(root)`` makes, holding
``processed/data_v3.pt`` - PyG's ``InMemoryDataset.save`` of 130,831 molecules (the 133,885 of QM9 less the 3,054
whose geometry failed its consistency check): one ``Data`` per molecule, collated without index increments, with
``x`` (n, 11) float atom features (one-hot H C N O F, atomic number, aromatic, sp, sp2, sp3, bonded hydrogens),
``pos`` (n, 3) positions in Å, ``edge_index`` (2, e) long bonds in both directions, indices local to the molecule,
``edge_attr`` (e, 4) one-hot bond type (single, double, triple, aromatic), ``y`` (1, 19) float properties (PyG's
units: eV for energies), ``z``, ``name``, ``idx`` (and ``smiles`` when made with RDKit). Read with PyG's own loader,
so ``torch_geometric`` must be installed (``pip install 'mtlab[graph]'``).

Examples: each molecule padded to 29 atom slots (:mod:`mtlab.data.molecules`, ``MoleculeLayout(29, 11, 4)``):
inputs (N, 29, 44) float32, which :func:`mtlab.data.molecules.unpack` turns back into the complete graph with bond
one-hot and distance that Nash-MTL builds with ``Complete()`` and ``Distance(norm=False)``. Inputs are never
standardised (``normalize`` must stay false). Packing the file takes seconds, so the packed tensors are kept in the
derived-dataset cache (:mod:`mtlab.data.derived`), keyed by the file's size and SHA-256 and :data:`FORMAT`.

Tasks: by default Nash-MTL's 11 targets in their order (PyG's ``y`` columns 0, 1, 2, 3, 5, 6, 12, 13, 14, 15, 11;
``U0``, ``U``, ``H``, ``G`` are the atomization energies), each a one-output ``regression`` task trained with MSE
(Nash-MTL's ``F.mse_loss``; the task type standardises targets with the training statistics). Targets per split:
(N,) float32 in :data:`UNITS`: ``homo``, ``lumo``, ``zpve``, ``U0``, ``U``, ``H``, ``G`` in meV (PyG's eV x 1000, the
unit Nash-MTL reports its MAE in), ``mu`` in D, ``alpha`` in a0³, ``r2`` in a0², ``cv`` in cal/(mol K).

Splits: Nash-MTL shuffles all molecules, then takes the first 10,000 as test, the next 10,000 as validation and the
remaining 110,831 as train. Here the shuffle is a permutation drawn from the run's seed (stream ``qm9/split``):
test = its first ``test_size`` molecules, validation (used instead of carving one) = the next ``val_size``, train =
the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from mtlab.config.base import DataBase, register_dataset
from mtlab.data.molecules import MoleculeLayout
from mtlab.data.placed import HandPlaced, find, register_hand_placed
from mtlab.errors import DataError, check_chosen

TARGETS = {
    "mu": 0, "alpha": 1, "homo": 2, "lumo": 3, "r2": 5, "zpve": 6, "U0": 12, "U": 13, "H": 14, "G": 15, "cv": 11,
}  # fmt: skip
"""mtlab's target names -> column of PyG's ``y``, in Nash-MTL's order (their ``target_idx``)."""
MILLI = frozenset({"homo", "lumo", "zpve", "U0", "U", "H", "G"})
"""The energies, stored by PyG in eV and given here in meV."""
UNITS = {
    "mu": "D", "alpha": "a0^3", "homo": "meV", "lumo": "meV", "r2": "a0^2", "zpve": "meV", "U0": "meV", "U": "meV",
    "H": "meV", "G": "meV", "cv": "cal/(mol K)",
}  # fmt: skip
LAYOUT = MoleculeLayout(slots=29, features=11, bond_types=4)
COUNT = 130831
PROCESSED = "processed/data_v3.pt"
FIELDS = ("x", "pos", "edge_index", "edge_attr", "y")
COLUMNS = {"x": LAYOUT.features, "pos": 3, "edge_attr": LAYOUT.bond_types, "y": 19}
OBTAIN = (
    "mtlab cannot download QM9's processed files; on a machine with internet run "
    "`python -c \"from torch_geometric.datasets import QM9; QM9('qm9')\"` (PyG downloads and processes it) and copy "
    "the folder qm9/ (with processed/data_v3.pt) into data_dir or $MTLAB_DATA"
)
REMEDY = f"to get intact files: {OBTAIN}"
FORMAT = 1  # bump when the packing changes: cached tensors of an older packing are then rebuilt


def _torch_geometric(path: Path) -> None:
    try:
        import torch_geometric.io.fs  # noqa: F401  (also registers PyG's classes as safe to unpickle)
    except ImportError as e:
        raise DataError(f"{path}: reading QM9 needs torch_geometric ({e}); pip install 'mtlab[graph]'") from e


def read_processed(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """PyG's ``InMemoryDataset.save`` file -> (the collated data as a dict of fields, the slices per field or None
    for a file of one molecule), with PyG's own loader."""
    _torch_geometric(path)
    from torch_geometric.io import fs

    if not path.is_file():
        raise DataError(f"{path}: missing; {REMEDY}")
    try:
        out = fs.torch_load(str(path), map_location="cpu")
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e}); {REMEDY}") from e
    except Exception as e:  # torch.load raises many kinds (unpickling, zip) on a damaged or foreign file
        raise DataError(f"{path}: cannot be read as a torch file ({type(e).__name__}); {REMEDY}") from e
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise DataError(f"{path}: is not a PyTorch Geometric InMemoryDataset file (data, slices[, class]); {REMEDY}")
    data, slices = out[0], out[1]
    if not isinstance(data, dict):  # PyG's older files stored the Data object itself
        data = data.to_dict() if hasattr(data, "to_dict") else {}
    if slices is not None and not isinstance(slices, dict):
        raise DataError(f"{path}: its slices are not a dict of tensors; {REMEDY}")
    return data, slices


def molecules(path: Path, data: dict[str, Any], slices: dict[str, Any] | None) -> dict[str, Any]:
    """Check PyG's QM9 layout; the fields and ``atoms`` / ``bonds`` (M,) long per molecule, all vectorised."""
    import torch

    missing = [f for f in FIELDS if not isinstance(data.get(f), torch.Tensor)]
    if missing:
        raise DataError(f"{path}: not PyTorch Geometric's QM9 layout (no {', '.join(missing)}); {REMEDY}")
    x, pos, edge_index, edge_attr, y = (data[f] for f in FIELDS)
    for field, columns in COLUMNS.items():
        if data[field].ndim != 2 or data[field].shape[1] != columns:
            found = tuple(data[field].shape)
            raise DataError(f"{path}: {field} has shape {found}, not PyG QM9's (n, {columns}); {REMEDY}")
    if edge_index.ndim != 2 or edge_index.shape[0] != 2 or edge_index.shape[1] != edge_attr.shape[0]:
        found = tuple(edge_index.shape)
        raise DataError(f"{path}: edge_index has shape {found}, not (2, {edge_attr.shape[0]}); {REMEDY}")
    if pos.shape[0] != x.shape[0]:
        raise DataError(f"{path}: pos has {pos.shape[0]} rows but x {x.shape[0]}; {REMEDY}")
    if slices is None:  # a file of one molecule: PyG stores no slices
        atoms, bonds = torch.tensor([x.shape[0]]), torch.tensor([edge_index.shape[1]])
    else:
        lost = [f for f in ("x", "edge_index", "y") if not isinstance(slices.get(f), torch.Tensor)]
        if lost:
            raise DataError(f"{path}: not PyTorch Geometric's QM9 layout (no slices of {', '.join(lost)}); {REMEDY}")
        atoms, bonds = slices["x"].diff(), slices["edge_index"].diff()
        ends = (int(slices["x"][-1]), int(slices["edge_index"][-1]), int(slices["y"][-1]))
        if ends != (x.shape[0], edge_index.shape[1], y.shape[0]) or not len(atoms) == len(bonds) == y.shape[0]:
            raise DataError(f"{path}: its slices do not match its x, edge_index and y; {REMEDY}")
    m = y.shape[0]
    if m and int(atoms.max()) > LAYOUT.slots:
        worst = int(atoms.argmax())
        raise DataError(
            f"{path}: molecule {worst} has {int(atoms.max())} atoms, more than QM9's {LAYOUT.slots}; {REMEDY}"
        )
    edge_molecule = torch.repeat_interleave(torch.arange(m), bonds)
    if edge_index.numel() and (int(edge_index.min()) < 0 or bool((edge_index >= atoms[edge_molecule]).any())):
        raise DataError(
            f"{path}: edge_index points outside its molecules (not collated with increment=False, "
            f"as InMemoryDataset.save does); {REMEDY}"
        )
    if edge_attr.numel() and not (((edge_attr == 0) | (edge_attr == 1)).all() and (edge_attr.sum(1) == 1).all()):
        raise DataError(f"{path}: edge_attr is not a one-hot bond type per edge; {REMEDY}")
    return {**{f: data[f] for f in FIELDS}, "atoms": atoms, "bonds": bonds}


def pack_file(path: Path) -> dict[str, Any]:
    """``inputs`` (M, 29, 44) float32 padded molecules and ``y`` (M, 19) float32 as PyG stores it."""
    import torch

    from mtlab.data.molecules import pack

    fields = molecules(path, *read_processed(path))
    edge_type = fields["edge_attr"].argmax(1) if fields["edge_attr"].numel() else fields["edge_attr"].new_zeros(0)
    inputs = pack(
        LAYOUT, fields["atoms"], fields["x"], fields["pos"], fields["edge_index"], edge_type.long(), fields["bonds"]
    )
    return {"inputs": inputs, "y": fields["y"].to(torch.float32).contiguous()}


def _count(root: Path) -> int:
    path = root / PROCESSED
    return len(molecules(path, *read_processed(path))["atoms"])


def _survey(root: Path) -> str:
    try:
        count = _count(root)
    except DataError as e:
        return f"incomplete: {str(e).split('; ')[0]}"
    if count != COUNT:
        return f"incomplete: {count} molecules, not the published {COUNT}"
    return f"complete: {COUNT} molecules"


def _verify(root: Path) -> list[str]:
    """The file read whole: PyG's layout, at most 29 atoms per molecule, one-hot bonds, 130,831 molecules."""
    try:
        count = _count(root)
    except DataError as e:
        return [str(e).split("; ")[0]]
    if count != COUNT:
        return [f"{root / PROCESSED}: holds {count} molecules, not the published {COUNT}"]
    return []


QM9 = register_hand_placed(
    HandPlaced(
        "qm9",
        ("qm9", "QM9"),
        OBTAIN,
        (PROCESSED,),
        _survey,
        _verify,
        licence="QM9's figshare terms (doi:10.6084/m9.figshare.c.978904; Ramakrishnan et al. 2014); PyG states none",
    )
)


@register_dataset
class QM9Data(DataBase):
    """QM9 (PyTorch Geometric's processed molecules): one regression task per target in ``targets``."""

    reads_with: ClassVar[tuple[str, ...]] = ("torch_geometric",)
    """The optional package the files are read with (the registry tests skip where it is missing)."""

    dataset: Literal["qm9"]
    targets: list[str] = Field(
        list(TARGETS),
        description="The properties to predict, one regression task each (default: Nash-MTL's 11, in their order); "
        f"known: {', '.join(TARGETS)}.",
    )
    test_size: int = Field(10000, gt=0, description="Molecules of the test split: the first of the seeded shuffle.")
    val_size: int = Field(10000, gt=0, description="Molecules of the validation split: the next of the shuffle.")
    normalize: bool = Field(False, description="Must stay false: padded molecules are never standardised per slot.")
    check_counts: bool = Field(True, description="Require the published 130,831 molecules (false for a part).")

    @field_validator("targets")
    @classmethod
    def _known(cls, targets: list[str]) -> list[str]:
        return check_chosen(targets, TARGETS, "QM9 target", "Nash-MTL's 11")

    @field_validator("normalize")
    @classmethod
    def _raw(cls, normalize: bool) -> bool:
        if normalize:
            raise ValueError(
                "QM9's inputs are padded molecules: a per-slot standardisation means nothing; leave normalize false"
            )
        return normalize

    def task_types(self) -> dict[str, str]:
        return dict.fromkeys(self.targets, "regression")

    def input_shape(self) -> tuple[int, ...]:
        return LAYOUT.shape

    @classmethod
    def example(cls, name: str, workdir: Path) -> dict[str, Any]:
        """Forty random molecules of 3 to 9 atoms in PyG's processed layout (8 test, 8 validation, 24 train);
        without torch_geometric no file is written (loading then says what to install)."""
        try:
            import torch_geometric  # noqa: F401
        except ImportError:
            pass
        else:
            write_example_files(workdir / "qm9", 40)
        return {"dataset": name, "data_dir": str(workdir), "test_size": 8, "val_size": 8, "check_counts": False}

    def load(self, seed: int):
        import torch

        from mtlab import seeding
        from mtlab.data.dataset import Dataset, Split
        from mtlab.data.derived import cached_tensors, file_sha256
        from mtlab.tasks import Task

        root = find(QM9, self.data_dir)
        path = root / PROCESSED
        _torch_geometric(path)
        try:
            sha256 = file_sha256(path)  # hashed once per process (a worker loads it for run after run)
            description = {"dataset": "qm9", "format": FORMAT, "size": path.stat().st_size, "sha256": sha256}
        except OSError as e:
            raise DataError(f"{path}: cannot be read ({e}); {REMEDY}") from e
        tensors, _, _ = cached_tensors("qm9", description, lambda: pack_file(path))
        inputs, y = tensors["inputs"], tensors["y"]
        m = inputs.shape[0]
        if self.check_counts and m != COUNT:
            raise DataError(
                f"{path}: holds {m} molecules, expected the published {COUNT}; {REMEDY} "
                "(data.check_counts: false loads a part of the files)"
            )
        if m < self.test_size + self.val_size + 1:
            raise DataError(
                f"{path}: holds {m} molecules, fewer than test_size + val_size + 1 = "
                f"{self.test_size + self.val_size + 1}; lower data.test_size / data.val_size, or {REMEDY}"
            )
        order = torch.randperm(m, generator=seeding.generator(seed, "qm9/split"))
        cut = self.test_size + self.val_size
        tasks = {t: Task(t, (t,), "regression", loss="mse") for t in self.targets}

        def split(index: torch.Tensor) -> Split:
            values = y[index].double()
            labels = {
                t: (values[:, TARGETS[t]] * (1000.0 if t in MILLI else 1.0)).float().contiguous() for t in self.targets
            }
            return Split(inputs[index], labels)

        test, val, train = split(order[: self.test_size]), split(order[self.test_size : cut]), split(order[cut:])
        return Dataset(self.dataset, tasks, train, test, str(root), val=val)


def write_example_files(root: Path, molecules: int | Sequence[int] = 40, seed: int = 0) -> Path:
    """Random molecules as PyG's ``QM9`` processes them, saved as it saves them under ``root``: ``processed/
    data_v3.pt`` (``InMemoryDataset.save`` of real ``Data`` objects) with ``pre_transform.pt`` and ``pre_filter.pt``.
    ``molecules``: how many (3 to 9 atoms each), or the atom count of each. Each has random elements, positions,
    bonds (both directions, sorted by source * n + target, one-hot type) and ``y`` (1, 19). Returns ``root``."""
    import torch
    import torch.nn.functional as F
    from torch_geometric.data import Data, InMemoryDataset
    from torch_geometric.io import fs

    generator = torch.Generator().manual_seed(seed)
    if isinstance(molecules, int):
        molecules = torch.randint(3, 10, (molecules,), generator=generator).tolist()
    data_list = []
    for i, n in enumerate(molecules):
        kind = torch.randint(0, 5, (n,), generator=generator)  # H C N O F
        z = torch.tensor([1, 6, 7, 8, 9])[kind]
        pairs = torch.triu_indices(n, n, offset=1)
        chosen = pairs[:, torch.rand(pairs.shape[1], generator=generator) < 0.4]
        edge_index = torch.cat([chosen, chosen.flip(0)], dim=1)
        edge_type = torch.randint(0, 4, (chosen.shape[1],), generator=generator).repeat(2)
        order = (edge_index[0] * n + edge_index[1]).argsort()
        edge_index, edge_type = edge_index[:, order], edge_type[order]
        flags = torch.randint(0, 2, (n, 4), generator=generator).float()  # aromatic, sp, sp2, sp3
        hydrogens = torch.zeros(n).index_add_(0, edge_index[1], (z == 1).float()[edge_index[0]])
        x = torch.cat([F.one_hot(kind, 5).float(), z[:, None].float(), flags, hydrogens[:, None]], dim=1)
        data_list.append(
            Data(
                x=x,
                z=z,
                pos=torch.randn(n, 3, generator=generator) * 1.5,
                edge_index=edge_index,
                edge_attr=F.one_hot(edge_type, 4).float(),
                y=torch.randn(1, 19, generator=generator),
                name=f"gdb_{i + 1}",
                idx=i,
            )
        )
    processed = root / "processed"
    processed.mkdir(parents=True, exist_ok=True)
    InMemoryDataset.save(data_list, str(processed / "data_v3.pt"))
    fs.torch_save("None", str(processed / "pre_transform.pt"))  # what PyG records for no pre_transform / pre_filter
    fs.torch_save("None", str(processed / "pre_filter.pt"))
    return root
