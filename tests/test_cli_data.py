"""``mtlab data list | verify | fetch`` through the real entry point: exit codes and what is printed."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from conftest import require_shared_data
from mtlab.cli.main import main
from mtlab.data.resolve import user_cache_root
from mtlab.data.sources import SOURCES
from test_data_resolve import bypass_proxies, serve_directory, toy_source, write_toy_files


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # keep table cells on one line so paths can be matched


def test_list(capsys):
    shared = require_shared_data()
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{shared / 'mnist'} ($MTLAB_DATA)" in out
    assert "mnist, mnist-pairs" in out
    assert "(embedded)" in out
    assert "not found" in out  # cifar100
    assert "downloads off" in out


def test_which_datasets_read_a_source_is_asked_of_the_datasets(capsys):
    """'used by' and what `fetch DATASET` fetches come from each dataset's answer, so a dataset no source lists by
    hand (morpho-mnist) is known to `mtlab data` and fetches its source."""
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "mnist, mnist-pairs, multi-mnist, multi-fashion-mnist, morpho-mnist" in out
    assert "fashion-mnist-sample, multi-fashion-sample, multi-fashion-mnist-sample" in out
    assert main(["data", "fetch", "morpho-mnist"]) == 2  # the mnist source, which a test may not download
    assert "downloads are off" in capsys.readouterr().err


def test_verify_everything_found(capsys):
    shared = require_shared_data()
    assert main(["data", "verify"]) == 0
    out = capsys.readouterr().out
    assert str(shared / "fashion-mnist" / "train-images-idx3-ubyte.gz") in out
    assert out.count(" ok ") == 16  # 4 MNIST, 4 Fashion-MNIST, 4 + 4 files of the two embedded samples


def test_verify_a_dataset_that_is_not_there(capsys):
    assert main(["data", "verify", "cifar100"]) == 1
    assert "not found" in capsys.readouterr().out


def test_verify_finds_a_damaged_copy(tmp_path, capsys):
    shared = require_shared_data()
    shutil.copytree(shared / "mnist", tmp_path / "mnist")
    damaged = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-20])
    assert main(["data", "verify", "mnist-pairs", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert str(damaged) in out
    assert "corrupt" in out
    assert out.count(" ok ") == 3


def test_fetch_into_a_data_dir(tmp_path, monkeypatch, capsys):
    served = tmp_path / "served"
    source = toy_source(write_toy_files(served))
    monkeypatch.delenv("MTLAB_OFFLINE")
    bypass_proxies(monkeypatch)
    with serve_directory(served) as url:
        # `fetch mnist` resolves the catalogue entry at call time: point it at the toy files on the loopback server.
        monkeypatch.setitem(SOURCES, "mnist", dataclasses.replace(source, mirrors=(url,)))
        assert main(["data", "fetch", "mnist", "--data-dir", str(tmp_path / "data")]) == 0
        assert "fetched into" in capsys.readouterr().out
        assert sorted(p.name for p in (tmp_path / "data" / "toy").iterdir()) == ["toy-images.gz", "toy-labels.gz"]
        assert main(["data", "fetch", "mnist", "--data-dir", str(tmp_path / "data")]) == 0
        assert "all files intact" in capsys.readouterr().out
    assert not user_cache_root().exists()


def test_fetch_refuses_when_offline(capsys):
    assert main(["data", "fetch", "fashion-mnist"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtlab: error: downloads are off (MTLAB_OFFLINE=1)")
    assert err.count("\n") == 1


def test_fetch_of_the_embedded_sample_is_an_error(capsys):
    assert main(["data", "fetch", "fashion-mnist-sample"]) == 2
    assert "ships inside the package" in capsys.readouterr().err


def test_unknown_dataset_is_a_usage_error(capsys):
    # Checked by the action, not argparse: the hand-placed datasets are known once the dataset plug-ins are imported.
    assert main(["data", "verify", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtlab: error: DATASET: unknown dataset 'imagenet'; known: [")
    assert "'nyuv2'" in err
    assert err.count("\n") == 1


def test_list_shows_the_composite_datasets_and_their_cached_builds(capsys):
    from mtlab.data import load_dataset
    from mtlab.data.multi_mnist import MultiData

    load_dataset(MultiData(dataset="multi-fashion-sample", per_image=1))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "│ multi-fashion-sample " in line)
    assert "fashion-mnist-sample" in row
    assert "1 (" in row  # one cached build, with its size
    assert "multi-fashion-mnist" in out
    if "mnist-sample" not in SOURCES:
        assert "not shipped: mnist-sample" in out
