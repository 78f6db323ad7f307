"""CelebA in its official layout, on small synthetic files written in that layout (random 178 x 218 JPEGs and the
two lists formatted as the official ones; the real files cannot be downloaded here)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from mtlab.data import derived, load_dataset
from mtlab.data.celeba import ATTRIBUTES, CelebAData, write_example_files
from mtlab.errors import DataError

PARTITION = [0, 0, 1, 2, 0, 2]  # train: images 1, 2, 5; validation: 3; test: 4, 6


@pytest.fixture
def celeba(tmp_path):
    write_example_files(tmp_path / "celeba", PARTITION, seed=3)
    return tmp_path


def _load(data_dir, **options):
    options = {"check_counts": False, "image_size": 16, **options}
    return load_dataset(CelebAData(dataset="celeba", data_dir=data_dir, **options))


def _official_values(root) -> np.ndarray:
    """(N, 40) of the attribute list, read independently: 1 / -1."""
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()[2:]
    return np.array([[int(v) for v in line.split()[1:]] for line in lines])


def test_celeba_reads_the_official_layout(celeba):
    dataset = _load(celeba)
    root = celeba / "celeba"
    assert dataset.origin == str(root)
    assert list(dataset.tasks) == list(ATTRIBUTES)
    assert all(task.type == "binary" for task in dataset.tasks.values())
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (3, 1, 2)
    assert dataset.input_shape == (3, 16, 16)
    assert dataset.train.images.dtype == torch.uint8
    values = _official_values(root)
    # Test image 2 of 2 is 000006.jpg (the sixth line of both lists).
    image = Image.open(root / "img_align_celeba" / "000006.jpg").convert("RGB")
    expected = np.array(image.resize((16, 16), Image.Resampling.BILINEAR))
    assert np.array_equal(dataset.test.images[1].numpy(), expected.transpose(2, 0, 1))
    for column, name in ((0, "5_o_Clock_Shadow"), (31, "Smiling"), (39, "Young")):
        assert dataset.test.labels[name].tolist() == [float(values[3, column] > 0), float(values[5, column] > 0)]
        assert dataset.train.labels[name].tolist() == [float(values[i, column] > 0) for i in (0, 1, 4)]
        assert dataset.val.labels[name].dtype == torch.float32


def test_chosen_attributes_native_size_and_the_drive_layout(celeba):
    root = celeba / "celeba"
    drive = celeba / "drive" / "celeba"
    (drive / "Img").mkdir(parents=True)
    shutil.copytree(root / "img_align_celeba", drive / "Img" / "img_align_celeba")
    for folder, name in (("Anno", "list_attr_celeba.txt"), ("Eval", "list_eval_partition.txt")):
        (drive / folder).mkdir()
        shutil.copy(root / name, drive / folder / name)
    dataset = _load(celeba / "drive", attributes=["Smiling", "Male"], image_size=None)
    assert dataset.origin == str(drive)
    assert list(dataset.tasks) == ["Smiling", "Male"]
    assert dataset.input_shape == (3, 218, 178)
    expected = np.array(Image.open(root / "img_align_celeba" / "000003.jpg").convert("RGB"))
    assert np.array_equal(dataset.val.images[0].numpy(), expected.transpose(2, 0, 1))
    assert dataset.val.labels["Male"].tolist() == [float(_official_values(root)[2, 20] > 0)]


def test_decoded_images_are_cached_by_content(celeba):
    first = _load(celeba)
    assert len(derived.cached_entries("celeba")) == 1
    again = _load(celeba)
    assert torch.equal(first.train.images, again.train.images)
    _load(celeba, image_size=8)  # another size: another entry
    assert len(derived.cached_entries("celeba")) == 2


def test_unknown_attribute_is_named_with_the_closest():
    with pytest.raises(ValidationError, match="unknown CelebA attribute 'Smilling'; did you mean 'Smiling'"):
        CelebAData(dataset="celeba", attributes=["Smilling"])


def _rewrite(path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "img_align_celeba" / "000004.jpg").unlink(), r"000004.jpg: missing, though the attribute"),
        (lambda r: Image.new("RGB", (64, 64)).save(r / "img_align_celeba" / "000002.jpg"), r"is 64 x 64, not the"),
        (lambda r: (r / "img_align_celeba" / "000005.jpg").write_bytes(b"junk"), r"000005.jpg: not a readable"),
        (lambda r: _rewrite(r / "list_attr_celeba.txt", 4, "000003.jpg " + " 0" * 40), r"line 5 holds a value other"),
        (lambda r: _rewrite(r / "list_attr_celeba.txt", 0, "7"), r"announces 7 images on line 1 but lists 6"),
        (lambda r: _rewrite(r / "list_attr_celeba.txt", 1, "Smiling"), r"line 2 names 1 attributes"),
        (lambda r: _rewrite(r / "list_eval_partition.txt", 0, "000002.jpg 0"), r"in the same order"),
        (lambda r: _rewrite(r / "list_eval_partition.txt", 2, "000003.jpg 3"), r"line 3 is not '<image> 0\|1\|2'"),
    ],
)
def test_damaged_files_are_one_data_error_naming_the_file(celeba, damage, message):
    damage(celeba / "celeba")
    with pytest.raises(DataError, match=message) as excinfo:
        _load(celeba)
    assert "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html" in str(excinfo.value)


def test_published_counts_are_checked(celeba):
    with pytest.raises(DataError, match=r"img_align_celeba: holds 6 images, expected the published 202599"):
        _load(celeba, check_counts=True)


def test_not_found_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"celeba files not found \(no list_attr_celeba.txt or Anno/list_attr"):
        _load(tmp_path)
