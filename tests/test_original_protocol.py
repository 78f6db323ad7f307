"""The original mnist-pairs protocol as options: raw pooled pixels, the stored batch order, and a training loop that
matches the original's own (plain PyTorch, consecutive slices of the drawn pairs, default Adam) step for step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mtlab.config import parse_config
from mtlab.data import Dataset, Split, Task
from mtlab.data.batches import Batches, Normalizer
from mtlab.data.pairs import make_pairs, pool
from mtlab.data.split import RunSplits
from mtlab.errors import ConfigError
from mtlab.models import build_model
from mtlab.train.fit import fit

CPU = torch.device("cpu")


def _mnist(seed: int = 0) -> Dataset:
    """Random 28x28 uint8 digits: the protocol, not learning, is under test."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
        return Split(images, {"digit": torch.randint(0, 10, (n,), generator=g)})

    return Dataset("mnist", {"digit": Task("digit", tuple("0123456789"))}, split(200), split(160), "synthetic")


def test_raw_pooling_keeps_the_0_255_scale():
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    raw, unit = pool(images, "raw"), pool(images, "unit")
    block = images[1, 0, 6:8, 10:12].double()
    assert raw[1, 0, 3, 5].item() == pytest.approx(block.mean().item(), abs=1e-4)
    assert raw.max() > 1.0
    torch.testing.assert_close(raw, unit * 255, rtol=1e-6, atol=1e-4)


def test_pixel_scale_is_a_data_option_with_unit_as_default():
    assert parse_config(_raw_config()).data.pixel_scale == "unit"
    raw = _raw_config()
    raw["data"]["pixel_scale"] = "raw"
    assert parse_config(raw).data.pixel_scale == "raw"
    raw["data"]["pixel_scale"] = "bytes"
    with pytest.raises(ConfigError, match=r"data\.pixel_scale"):
        parse_config(raw)
    same_draw = make_pairs(_mnist(), 40, seed=3, scale="raw"), make_pairs(_mnist(), 40, seed=3, scale="unit")
    torch.testing.assert_close(same_draw[0].train.images, same_draw[1].train.images * 255, rtol=1e-6, atol=1e-4)


def test_unshuffled_batches_are_consecutive_slices_every_epoch():
    split = make_pairs(_mnist(), 50, seed=1, scale="raw").train
    batches = Batches(split, 20, Normalizer.fit(split.images, standardize=False), shuffle=False)
    for _ in range(2):
        seen = [x for x, _ in batches]
        assert [len(x) for x in seen] == [20, 20, 10]
        torch.testing.assert_close(torch.cat(seen), split.images)


def _raw_config(shuffle: bool = True) -> dict:
    return {
        "seed": 5,
        "data": {"dataset": "mnist-pairs", "pairs": 60, "val_fraction": 0.0, "normalize": False},
        "model": {"kind": "pairs", "branch": {"type": "mlp", "widths": [24]}, "head": {"widths": [8]}},
        "loss": {"weights": {"leq": 0.5, "digit_a": 0.25, "digit_b": 0.25}},
        "optim": {"name": "adam", "lr": 0.001},
        "train": {"epochs": 3, "batch_size": 20, "shuffle": shuffle},
    }


def _original_loop(model: torch.nn.Module, train: Split, epochs: int, batch_size: int) -> None:
    """The original study's training loop, written plainly: default Adam, the pairs in their drawn order in
    consecutive slices every epoch, loss 0.5 * main + 0.5 * (digit_a + digit_b) / 2."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        for start in range(0, len(train), batch_size):
            x = train.images[start : start + batch_size]
            y = {t: v[start : start + batch_size] for t, v in train.labels.items()}
            out = model(x)
            aux = (F.cross_entropy(out["digit_a"], y["digit_a"]) + F.cross_entropy(out["digit_b"], y["digit_b"])) / 2
            loss = 0.5 * F.cross_entropy(out["leq"], y["leq"]) + 0.5 * aux
            model.zero_grad()
            loss.backward()
            optimizer.step()


@pytest.mark.parametrize("shuffle", [False, True])
def test_faithful_options_train_exactly_like_the_original_loop(shuffle):
    config = parse_config(_raw_config(shuffle=shuffle))
    dataset = make_pairs(_mnist(), config.data.pairs, config.seed, scale="raw")
    torch.manual_seed(0)
    model = build_model(config, dataset.tasks, dataset.input_shape)
    original = copy.deepcopy(model)
    classes = {t: task.num_classes for t, task in dataset.tasks.items()}
    fit(model, RunSplits(dataset.train, None, dataset.test), config, tasks=classes, device=CPU)
    _original_loop(original, dataset.train, config.train.epochs, config.train.batch_size)
    ours, theirs = model.state_dict(), original.state_dict()
    close = all(torch.allclose(ours[k], theirs[k], rtol=1e-4, atol=1e-5) for k in ours)
    # Shuffled batches are a different protocol: the weights must then differ, or this test could not fail.
    assert close is not shuffle
