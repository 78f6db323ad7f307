"""CIFAR-100 on small synthetic files in the official layout (the real data is not available here)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mtlab.data import cifar, load_dataset
from mtlab.data.cifar100 import CIFAR100, Cifar100Data
from mtlab.data.download import fetch
from mtlab.data.resolve import resolve
from mtlab.data.sources import SOURCES, RawFile, Source
from mtlab.errors import DataError
from test_data_resolve import bypass_proxies, serve_directory

FINE_NAMES = [f"fine{i:02d}".encode() for i in range(100)]
COARSE_NAMES = [f"coarse{i:02d}".encode() for i in range(20)]


def _batch(n: int, seed: int, label: bytes) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": label,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"fine_labels": rng.integers(0, 100, n).tolist(),
        b"coarse_labels": rng.integers(0, 20, n).tolist(),
    }


def _pickled(value: object) -> bytes:
    return pickle.dumps(value, protocol=2)  # the protocol of the official (Python 2) files


MEMBERS = {
    "train": _pickled(_batch(12, 0, b"training batch 1 of 1")),
    "test": _pickled(_batch(8, 1, b"testing batch 1 of 1")),
    "meta": _pickled({b"fine_label_names": FINE_NAMES, b"coarse_label_names": COARSE_NAMES}),
}


def write_tarball(path: Path, members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> Path:
    """A .tar.gz with folder ``cifar-100-python/`` holding ``members`` and a stray ``file.txt~`` (as the real one)."""
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo("cifar-100-python")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, content in {**members, "file.txt~": b""}.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def synthetic_source(tarball: Path | None = None, members: dict[str, bytes] = MEMBERS) -> Source:
    """The official catalogue entry with the md5s of the synthetic files (and of ``tarball`` if given)."""
    files = tuple(RawFile(name, hashlib.md5(content).hexdigest(), "md5") for name, content in members.items())
    archive = CIFAR100.archive
    if tarball is not None:
        archive = dataclasses.replace(archive, md5=hashlib.md5(tarball.read_bytes()).hexdigest())
    return dataclasses.replace(CIFAR100, files=files, archive=archive)


def write_unpacked(root: Path) -> Path:
    directory = root / "cifar-100-python"
    directory.mkdir(parents=True)
    for name, content in MEMBERS.items():
        (directory / name).write_bytes(content)
    return directory


# ------------------------------------------------------------------------------------------------ parsing


def test_batch_layout(tmp_path):
    directory = write_unpacked(tmp_path)
    batch = cifar.load_batch(directory / "train", remedy="r")
    raw = pickle.loads(MEMBERS["train"])
    assert batch.images.shape == (12, 3, 32, 32)
    assert batch.images.dtype == np.uint8
    # Row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major.
    i, c, y, x = 5, 2, 7, 30
    assert batch.images[i, c, y, x] == raw[b"data"][i, c * 1024 + y * 32 + x]
    assert batch.fine.tolist() == raw[b"fine_labels"]
    assert batch.coarse.tolist() == raw[b"coarse_labels"]
    assert batch.fine.dtype == np.int64


def test_meta_names(tmp_path):
    fine, coarse = cifar.load_meta(write_unpacked(tmp_path) / "meta", remedy="r")
    assert fine == tuple(n.decode() for n in FINE_NAMES)
    assert coarse == tuple(n.decode() for n in COARSE_NAMES)


def test_load_dataset_from_an_unpacked_directory(tmp_path, monkeypatch):
    directory = write_unpacked(tmp_path)
    monkeypatch.setitem(SOURCES, "cifar100", synthetic_source())
    dataset = load_dataset(Cifar100Data(dataset="cifar100", data_dir=tmp_path))
    assert dataset.origin == str(directory)
    assert list(dataset.tasks) == ["fine", "coarse"]
    assert dataset.tasks["fine"].num_classes == 100
    assert dataset.tasks["coarse"].class_names[3] == "coarse03"
    assert dataset.input_shape == (3, 32, 32)
    assert (len(dataset.train), len(dataset.test)) == (12, 8)
    assert dataset.train.labels["fine"].tolist() == pickle.loads(MEMBERS["train"])[b"fine_labels"]


def test_official_checksums_reject_synthetic_files(tmp_path):
    write_unpacked(tmp_path)
    with pytest.raises(DataError) as excinfo:
        resolve(CIFAR100, tmp_path)
    message = str(excinfo.value)
    assert str(tmp_path / "cifar-100-python" / "train") in message
    assert "16019d7e3df5f24257cddd939b257f8d" in message


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ([1, 2], "not a dict"),
        ({b"fine_labels": []}, "no b'data' entry"),
        ({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 0], b"coarse_labels": [0, 0]}, "(N, 3072)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 100], b"coarse_labels": [0, 0]}, "0-99"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1], b"coarse_labels": [0]}, "0-19"),
    ],
)
def test_malformed_batches(tmp_path, value, match):
    path = tmp_path / "train"
    path.write_bytes(_pickled(value))
    with pytest.raises(DataError, match=match):
        cifar.load_batch(path, remedy="r")


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "train"
    path.write_bytes(_pickled({b"data": _Exploit(marker)}))
    with pytest.raises(DataError) as excinfo:
        cifar.load_batch(path, remedy="r")
    assert f"{path} is not a CIFAR-100 pickle (refusing to load" in str(excinfo.value)
    assert "system" in str(excinfo.value)
    assert not marker.exists()


def test_truncated_pickle(tmp_path):
    path = tmp_path / "test"
    path.write_bytes(MEMBERS["test"][:100])
    with pytest.raises(DataError, match="not a CIFAR-100 pickle"):
        cifar.load_batch(path, remedy="r")


# ------------------------------------------------------------------------------------------------ the archive


def test_extract_archive(tmp_path):
    tarball = write_tarball(tmp_path / "cifar-100-python.tar.gz", MEMBERS)
    target = cifar.extract_archive(tarball, tmp_path / "root", synthetic_source(tarball))
    assert target == tmp_path / "root" / "cifar-100-python"
    assert sorted(p.name for p in target.iterdir()) == ["meta", "test", "train"]
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["cifar-100-python"]  # no temporary left


def test_official_tarball_md5_rejects_a_synthetic_tarball(tmp_path):
    tarball = write_tarball(tmp_path / "cifar-100-python.tar.gz", MEMBERS)
    with pytest.raises(DataError) as excinfo:
        cifar.extract_archive(tarball, tmp_path / "root", CIFAR100)
    assert f"{tarball} has md5" in str(excinfo.value)
    assert "expected eb9058c3a382ffc7106e4002c42a8d85" in str(excinfo.value)
    assert not (tmp_path / "root" / "cifar-100-python").exists()


def test_official_member_md5_rejects_a_synthetic_member(tmp_path):
    tarball = write_tarball(tmp_path / "cifar-100-python.tar.gz", MEMBERS)
    source = dataclasses.replace(CIFAR100, archive=synthetic_source(tarball).archive)
    with pytest.raises(DataError) as excinfo:
        cifar.extract_archive(tarball, tmp_path / "root", source)
    assert "member cifar-100-python/train has md5" in str(excinfo.value)
    assert "expected 16019d7e3df5f24257cddd939b257f8d" in str(excinfo.value)
    assert not (tmp_path / "root" / "cifar-100-python").exists()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    "evil",
    [
        _member("../evil"),
        _member("/tmp/evil-absolute"),
        _member("cifar-100-python/../../evil"),
        _member("elsewhere/evil"),
        _member("cifar-100-python/link", tarfile.SYMTYPE, "/etc/passwd"),
        _member("cifar-100-python/hard", tarfile.LNKTYPE, "/etc/passwd"),
        _member("cifar-100-python/dev", tarfile.CHRTYPE),
    ],
    ids=lambda info: info.name,
)
def test_unsafe_members_are_refused(tmp_path, evil):
    tarball = write_tarball(tmp_path / "cifar-100-python.tar.gz", MEMBERS, [evil])
    root = tmp_path / "a" / "root"
    with pytest.raises(DataError) as excinfo:
        cifar.extract_archive(tarball, root, synthetic_source(tarball))
    assert f"unsafe or unexpected member {evil.name!r}" in str(excinfo.value)
    assert str(tarball) in str(excinfo.value)
    assert list(root.iterdir()) == []
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "a" / "evil").exists()


def test_archive_missing_a_member(tmp_path):
    members = {k: v for k, v in MEMBERS.items() if k != "meta"}
    tarball = write_tarball(tmp_path / "cifar-100-python.tar.gz", members)
    with pytest.raises(DataError, match="lacks cifar-100-python/meta"):
        cifar.extract_archive(tarball, tmp_path / "root", synthetic_source(tarball))


def test_corrupt_archive(tmp_path):
    tarball = tmp_path / "cifar-100-python.tar.gz"
    tarball.write_bytes(write_tarball(tmp_path / "ok.tar.gz", MEMBERS).read_bytes()[:500])
    with pytest.raises(DataError, match="cannot be unpacked"):
        cifar.extract_archive(tarball, tmp_path / "root", synthetic_source(tarball))


def test_fetch_downloads_and_unpacks_the_archive(tmp_path, monkeypatch):
    bypass_proxies(monkeypatch)
    served = tmp_path / "served"
    served.mkdir()
    tarball = write_tarball(served / "cifar-100-python.tar.gz", MEMBERS)
    with serve_directory(served) as url:
        source = synthetic_source(tarball)
        archive = dataclasses.replace(source.archive, urls=(url + "missing.tar.gz", url + "cifar-100-python.tar.gz"))
        source = dataclasses.replace(source, archive=archive)
        directory = fetch(source, tmp_path / "cache", show_progress=False)
    assert sorted(p.name for p in directory.iterdir()) == ["meta", "test", "train"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["cifar-100-python"]  # tarball removed
