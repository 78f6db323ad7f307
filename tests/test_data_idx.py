"""IDX parsing: the real MNIST / Fashion-MNIST files, round trips, and every way a file can be damaged."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_shared_data
from mtlab.data.idx import parse_idx, read_bytes, read_idx, write_idx
from mtlab.errors import DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_labels_have_the_official_class_counts():
    mnist = require_shared_data() / "mnist"
    train = read_idx(mnist / "train-labels-idx1-ubyte.gz")
    test = read_idx(mnist / "t10k-labels-idx1-ubyte.gz")
    assert train.dtype == np.uint8
    assert train.shape == (60000,)
    assert np.bincount(train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(test).tolist() == MNIST_TEST_COUNTS


def test_real_mnist_test_images_shape_and_range():
    images = read_idx(require_shared_data() / "mnist" / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28)
    assert images.dtype == np.uint8
    assert images.flags.writeable
    assert images.max() == 255
    assert images[:, 0, 0].max() == 0  # digits are centred: corners are background


def test_real_fashion_labels_are_balanced():
    fashion = require_shared_data() / "fashion-mnist"
    assert np.bincount(read_idx(fashion / "train-labels-idx1-ubyte.gz")).tolist() == [6000] * 10
    assert np.bincount(read_idx(fashion / "t10k-labels-idx1-ubyte.gz")).tolist() == [1000] * 10


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_round_trip_images(tmp_path, name):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, images)
    np.testing.assert_array_equal(read_idx(tmp_path / name), images)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 255), max_size=50))
def test_round_trip_labels(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("idx") / "labels-idx1-ubyte.gz"
    labels = np.array(values, dtype=np.uint8)
    write_idx(path, labels)
    np.testing.assert_array_equal(read_idx(path), labels)


def test_write_idx_is_byte_for_byte_reproducible(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "a.gz", images)
    write_idx(tmp_path / "b.gz", images)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_write_idx_refuses_other_arrays(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x", np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


def _labels_gz(tmp_path, n=100):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(path, (np.arange(n) % 10).astype(np.uint8))
    return path


def _assert_names_file(excinfo, path, *fragments):
    message = str(excinfo.value)
    assert str(path) in message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_truncated_gzip(tmp_path):
    path = _labels_gz(tmp_path)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    _assert_names_file(excinfo, path, "truncated or corrupt", "mtlab data fetch mnist")


def test_bad_crc(tmp_path):
    path = _labels_gz(tmp_path)
    stored = bytearray(path.read_bytes())
    stored[-8] ^= 0xFF  # the gzip trailer: CRC-32 (4 bytes), then the length (4 bytes)
    path.write_bytes(bytes(stored))
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    _assert_names_file(excinfo, path, "truncated or corrupt", "CRC")


def test_not_gzip_despite_the_name(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(b"<html>Not Found</html>")
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    _assert_names_file(excinfo, path, "truncated or corrupt")


def test_wrong_magic(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes((2050).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x00")
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    _assert_names_file(excinfo, path, "magic number 0x00000802")


@pytest.mark.parametrize("extra", [-1, 1])
def test_wrong_payload_length(tmp_path, extra):
    path = tmp_path / "images"
    header = (2051).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (2, 3, 3))
    path.write_bytes(header + bytes(18 + extra))
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    _assert_names_file(excinfo, path, "needs 18 data bytes", f"found {18 + extra}")


@pytest.mark.parametrize("content", [b"", b"\x00\x00", (2051).to_bytes(4, "big") + bytes(8)])
def test_short_header(tmp_path, content):
    with pytest.raises(DataError, match="too short"):
        parse_idx(content, tmp_path / "f")


def test_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="cannot be read"):
        read_bytes(tmp_path / "absent.gz")


def test_remedy_is_part_of_the_message(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01")[:-3])
    with pytest.raises(DataError, match=r"reinstall mtlab$"):
        read_idx(path, remedy="reinstall mtlab")
