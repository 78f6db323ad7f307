"""QM9 as PyTorch Geometric processes it, on small synthetic files written the way PyG writes them (real ``Data``
objects saved with ``InMemoryDataset.save``; the real files cannot be downloaded here): the padded molecules unpack
to exactly what PyG's own pipeline (Nash-MTL's complete graph and distances) gives, targets in their units, seeded
splits, and every error a user can hit."""

from __future__ import annotations

import sys

import pytest
import torch

pytest.importorskip("torch_geometric", reason="qm9 reads PyTorch Geometric's files: pip install 'mtlab[graph]'")

import torch_geometric.transforms as T
from pydantic import ValidationError
from torch_geometric.data import Batch, Data, InMemoryDataset
from torch_geometric.data.collate import collate
from torch_geometric.io import fs
from torch_geometric.utils import remove_self_loops

from mtlab.cli.main import main
from mtlab.data import derived, load_dataset
from mtlab.data.molecules import unpack
from mtlab.data.qm9 import LAYOUT, MILLI, PROCESSED, TARGETS, QM9Data, write_example_files
from mtlab.errors import DataError

MOLECULES = 40


@pytest.fixture
def qm9(tmp_path):
    write_example_files(tmp_path / "qm9", MOLECULES, seed=3)
    return tmp_path


def _config(data_dir, **options) -> QM9Data:
    options = {"test_size": 8, "val_size": 6, "check_counts": False, **options}
    return QM9Data(dataset="qm9", data_dir=data_dir, **options)


def _load(data_dir, seed=0, **options):
    return load_dataset(_config(data_dir, **options), seed)


class _Processed(InMemoryDataset):
    """PyG's own reading of a processed file: a bare in-memory dataset loading it."""

    def __init__(self, path):
        super().__init__(None)
        self.load(str(path))


class Complete:
    """The complete directed graph without self-loops, bond attributes kept on the bonded pairs (zeros elsewhere) -
    the transform of Nash-MTL's QM9 experiment, written here from its description."""

    def __call__(self, data: Data) -> Data:
        n = data.num_nodes
        source = torch.arange(n).repeat_interleave(n)
        target = torch.arange(n).repeat(n)
        attr = data.edge_attr.new_zeros(n * n, data.edge_attr.shape[1])
        attr[data.edge_index[0] * n + data.edge_index[1]] = data.edge_attr
        data.edge_index, data.edge_attr = remove_self_loops(torch.stack([source, target]), attr)
        return data


def _molecule_ids(dataset_split, data: dict, slices: dict) -> torch.Tensor:
    """The file's molecule index of each loaded example, found by its first atom's position (random, so unique)."""
    first = data["pos"][slices["x"][:-1]]  # (M, 3)
    slot0 = dataset_split.images[:, 0, 1 + LAYOUT.features : 4 + LAYOUT.features]  # (N, 3)
    match = (slot0[:, None, :] == first[None, :, :]).all(-1)  # (N, M)
    assert (match.sum(1) == 1).all()
    return match.float().argmax(1)


def test_loads_the_shapes_units_and_tasks_it_declares(qm9):
    config = _config(qm9)
    dataset = load_dataset(config)
    assert config.input_shape() == (29, 44) == dataset.input_shape
    assert list(dataset.tasks) == ["mu", "alpha", "homo", "lumo", "r2", "zpve", "U0", "U", "H", "G", "cv"]
    assert config.task_types() == dict.fromkeys(dataset.tasks, "regression")
    for task in dataset.tasks.values():
        assert (task.type, task.loss, task.class_names) == ("regression", "mse", (task.name,))
    assert (len(dataset.test), len(dataset.val), len(dataset.train)) == (8, 6, MOLECULES - 14)
    assert dataset.origin == str(qm9 / "qm9")
    data, slices, _ = fs.torch_load(str(qm9 / "qm9" / PROCESSED))
    for split in (dataset.train, dataset.val, dataset.test):
        assert split.images.dtype == torch.float32
        assert split.images.shape[1:] == (29, 44)
        ids = _molecule_ids(split, data, slices)
        for name, column in TARGETS.items():
            assert split.labels[name].shape == (len(split),)
            assert split.labels[name].dtype == torch.float32
            scale = 1000.0 if name in MILLI else 1.0
            assert torch.equal(split.labels[name], (data["y"][ids, column].double() * scale).float())
    assert {"homo", "lumo", "zpve", "U0", "U", "H", "G"} == MILLI


def test_splits_are_disjoint_cover_everything_and_follow_the_seed(qm9):
    data, slices, _ = fs.torch_load(str(qm9 / "qm9" / PROCESSED))

    def ids(seed):
        dataset = _load(qm9, seed)
        return [_molecule_ids(s, data, slices).tolist() for s in (dataset.test, dataset.val, dataset.train)]

    test, val, train = ids(0)
    assert sorted(test + val + train) == list(range(MOLECULES))
    assert ids(0) == [test, val, train]
    assert ids(1)[0] != test


def test_unpacked_examples_are_what_pyg_builds_for_nash_mtl(qm9):
    """PyG's own pipeline - the molecules read back by InMemoryDataset, Complete() and Distance(norm=False),
    batched by Batch.from_data_list - gives exactly the graphs ``molecules.unpack`` makes of the loaded examples."""
    dataset = _load(qm9)
    path = qm9 / "qm9" / PROCESSED
    data, slices, _ = fs.torch_load(str(path))
    ids = _molecule_ids(dataset.train, data, slices).tolist()
    pyg = _Processed(path)
    transform = T.Compose([Complete(), T.Distance(norm=False)])
    expected = Batch.from_data_list([transform(pyg.get(i)) for i in ids])
    graphs = unpack(dataset.train.images, LAYOUT)
    assert graphs.molecules == len(ids)
    assert torch.equal(graphs.x, expected.x)
    assert torch.equal(graphs.pos, expected.pos)
    assert torch.equal(graphs.edge_index, expected.edge_index)
    assert torch.equal(graphs.batch, expected.batch)
    assert torch.equal(graphs.edge_attr[:, :4], expected.edge_attr[:, :4])
    torch.testing.assert_close(graphs.edge_attr[:, 4:], expected.edge_attr[:, 4:])


def test_chosen_targets_and_the_cache(qm9):
    dataset = _load(qm9, targets=["cv", "U0"])
    assert list(dataset.tasks) == ["cv", "U0"]
    assert list(dataset.train.labels) == ["cv", "U0"]
    assert len(derived.cached_entries("qm9")) == 1
    again = _load(qm9)
    assert torch.equal(again.train.images, _load(qm9).train.images)
    assert len(derived.cached_entries("qm9")) == 1  # the packing is shared by every choice of targets
    write_example_files(qm9 / "qm9", MOLECULES + 1, seed=4)  # other files: a new key, never the stale entry
    assert len(_load(qm9).train) == MOLECULES + 1 - 14
    assert len(derived.cached_entries("qm9")) == 2


def test_options_are_checked():
    with pytest.raises(ValidationError, match="did you mean 'homo'"):
        QM9Data(dataset="qm9", targets=["hommo"])
    with pytest.raises(ValidationError, match="twice"):
        QM9Data(dataset="qm9", targets=["mu", "mu"])
    with pytest.raises(ValidationError, match="padded molecules"):
        QM9Data(dataset="qm9", normalize=True)
    assert QM9Data(dataset="qm9").normalize is False


def _save(root, data_list):
    (root / "processed").mkdir(parents=True, exist_ok=True)
    InMemoryDataset.save(data_list, str(root / PROCESSED))


def _molecule(n=3, **fields):
    edge_index = torch.tensor([[0, 1], [1, 0]])
    data = {"x": torch.rand(n, 11), "pos": torch.rand(n, 3), "edge_index": edge_index,
            "edge_attr": torch.eye(4)[[0, 0]], "y": torch.rand(1, 19), **fields}  # fmt: skip
    return Data(**{k: v for k, v in data.items() if v is not None})


def test_missing_torch_geometric_says_what_to_install(qm9, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_geometric.io.fs", None)
    wanted = r"data_v3\.pt: reading QM9 needs torch_geometric .*pip install 'mtlab\[graph\]'"
    with pytest.raises(DataError, match=wanted):
        _load(qm9)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DataError, match=r"qm9 files not found .*QM9\('qm9'\).* copy the folder qm9/"):
        _load(tmp_path)


def test_an_unreadable_file(qm9):
    (qm9 / "qm9" / PROCESSED).write_bytes(b"not a torch file")
    with pytest.raises(DataError, match=r"data_v3\.pt: cannot be read .*QM9\('qm9'\)"):
        _load(qm9)


def test_a_file_without_pyg_qm9_fields(tmp_path):
    _save(tmp_path / "qm9", [_molecule(pos=None) for _ in range(20)])
    with pytest.raises(DataError, match=r"data_v3\.pt: not PyTorch Geometric's QM9 layout \(no pos\)"):
        _load(tmp_path)


def test_bond_indices_must_be_local_to_their_molecule(tmp_path):
    data, slices, _ = collate(Data, [_molecule() for _ in range(20)], increment=True, add_batch=False)
    (tmp_path / "qm9" / "processed").mkdir(parents=True)
    fs.torch_save((data.to_dict(), slices, Data), str(tmp_path / "qm9" / PROCESSED))
    with pytest.raises(DataError, match="edge_index points outside its molecules"):
        _load(tmp_path)


def test_a_molecule_of_more_than_29_atoms(tmp_path):
    write_example_files(tmp_path / "qm9", [5, 30, *[4] * 18])
    with pytest.raises(DataError, match=r"data_v3\.pt: molecule 1 has 30 atoms, more than QM9's 29"):
        _load(tmp_path)


def test_too_few_molecules_for_the_splits(qm9):
    with pytest.raises(DataError, match=r"holds 40 molecules, fewer than test_size \+ val_size \+ 1 = 41"):
        _load(qm9, test_size=20, val_size=20)


def test_the_published_count_is_required_unless_told_otherwise(qm9):
    with pytest.raises(DataError, match=r"holds 40 molecules, expected the published 130831.*check_counts: false"):
        _load(qm9, check_counts=True)


def test_mtlab_data_lists_and_verifies_qm9(qm9, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["data", "list", "--data-dir", str(qm9)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if " qm9 " in line)
    assert str(qm9 / "qm9") in row
    assert "40 molecules, not the published 130831" in row
    assert main(["data", "verify", "qm9", "--data-dir", str(qm9)]) == 1
    assert "not the published 130831" in capsys.readouterr().out
