"""The ``morpho-mnist`` datasets: digits with their morphometrics as regression tasks, measures shipped for the
embedded sample and equal to a fresh measurement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import require_shared_data
from mtlab.config.schema import RunConfig
from mtlab.data import morpho
from mtlab.data.catalog import load_dataset
from mtlab.data.morpho_mnist import SHIPPED_MEASURES, MorphoMnistData, shipped_measures


@pytest.fixture(scope="module")
def sample():
    return load_dataset(MorphoMnistData(dataset="morpho-mnist-sample"))


def test_tasks_are_the_digit_and_every_measure(sample):
    assert {t: task.type for t, task in sample.tasks.items()} == {
        "digit": "multiclass", **{m: "regression" for m in morpho.MEASURES}
    }
    assert sample.train.images.shape == (5000, 1, 28, 28)
    for m in morpho.MEASURES:
        y = sample.train.labels[m]
        assert y.dtype == torch.float32
        assert y.shape == (5000,)
        assert torch.isfinite(y).float().mean() > 0.99  # NaN only where a digit could not be measured
    thickness = sample.train.labels["thickness"]
    assert 1.5 < float(thickness.nanmean()) < 4.0  # Castro et al.'s MNIST: about 2.5 px


def test_the_shipped_measures_equal_a_fresh_measurement(sample):
    pytest.importorskip("skimage", reason="scikit-image (mtlab[morpho]) measures digits")
    assert (SHIPPED_MEASURES / "mnist-sample.npz").is_file()
    assert shipped_measures("mnist-sample") is not None
    index = torch.arange(0, 5000, 173)  # 29 digits spread over the split
    fresh = morpho.measure_images(sample.train.images[index, 0].numpy(), workers=1)
    shipped = torch.stack([sample.train.labels[m][index] for m in morpho.MEASURES], 1).numpy()
    np.testing.assert_allclose(fresh, shipped, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_a_run_config_picks_tasks_and_stops_on_a_regression_metric():
    config = RunConfig.model_validate(
        {
            "data": {"dataset": "morpho-mnist-sample"},
            "tasks": ["digit", "thickness", "slant"],
            "model": {"trunk": {"type": "mlp", "widths": [8]}},
            "train": {"early_stopping": {"metric": "val.thickness.mae"}},
        }
    )
    assert config.task_type_names() == {"digit": "multiclass", "thickness": "regression", "slant": "regression"}
    assert config.metric_direction("val.thickness.mae") == "min"
    assert config.metric_direction("val.thickness.r2") == "max"
    assert config.metric_direction("val.digit.acc") == "max"


def test_the_shipped_measures_of_the_full_mnist_equal_a_fresh_measurement():
    pytest.importorskip("skimage", reason="scikit-image (mtlab[morpho]) measures digits")
    data_dir = require_shared_data()
    assert shipped_measures("mnist") is not None
    full = load_dataset(MorphoMnistData(dataset="morpho-mnist", data_dir=data_dir, download=False))
    assert full.train.images.shape == (60000, 1, 28, 28)
    index = torch.arange(0, 60000, 2003)  # 30 digits spread over the split
    fresh = morpho.measure_images(full.train.images[index, 0].numpy(), workers=1)
    shipped = torch.stack([full.train.labels[m][index] for m in morpho.MEASURES], 1).numpy()
    np.testing.assert_allclose(fresh, shipped, rtol=1e-5, atol=1e-5, equal_nan=True)
