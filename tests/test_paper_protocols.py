"""What the dense benchmarks' published protocols need from the trainer: PyTorch's StepLR per epoch, and test
metrics averaged over the last N epochs (Liu et al. 2019; Nash-MTL; FAMO) as a stated alternative to selection."""

from __future__ import annotations

import pytest
import torch

from mtlab.config import parse_config
from mtlab.errors import ConfigError
from mtlab.train.fit import fit
from mtlab.train.optim import build_optimizer, build_schedule
from test_replicas import CPU, FASHION_TASKS, fashion_splits

CLASSES = {t: task.num_classes for t, task in FASHION_TASKS.items()}


def config(**train):
    raw = {
        "data": {"dataset": "fashion-mnist", "val_fraction": 0.0},
        "model": {"trunk": {"type": "mlp", "widths": [16]}},
        "train": {"batch_size": 40, "device": "cpu", **train},
    }
    return parse_config(raw)


def train(c):
    torch.manual_seed(0)
    from mtlab.models import build_model

    return fit(build_model(c, FASHION_TASKS, (1, 12, 12)), fashion_splits(0), c, tasks=CLASSES, device=CPU)


def test_step_schedule_is_steplr_stepped_per_epoch():
    c = parse_config({**config().model_dump(), "optim": {"lr": 0.1, "schedule": "step", "step_epochs": 2}})
    optimizer = build_optimizer(c.optim, [torch.nn.Parameter(torch.zeros(1))])
    schedule = build_schedule(c.optim, optimizer, total_steps=5 * 3, steps_per_epoch=3)
    lrs = []
    for _ in range(15):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    # epochs 0-1 at 0.1, 2-3 at 0.05, 4 at 0.025 (StepLR(step_size=2, gamma=0.5) stepped after each epoch)
    assert lrs == pytest.approx([0.1] * 6 + [0.05] * 6 + [0.025] * 3)


def test_test_metrics_averaged_over_the_last_epochs_equal_the_mean_of_shorter_runs():
    averaged = train(config(epochs=4, test_last_epochs=3))
    shorter = [train(config(epochs=e)) for e in (2, 3, 4)]  # the same training, stopped after 2, 3 and 4 epochs
    for key, value in averaged.test.items():
        assert value == pytest.approx(sum(r.test[key] for r in shorter) / 3, rel=1e-5, abs=1e-7), key
    assert averaged.test != shorter[-1].test  # the mean, not the last epoch alone


def test_test_average_excludes_early_stopping_and_fits_the_epochs():
    with pytest.raises(ConfigError, match="test_last_epochs 5 > epochs 4"):
        config(epochs=4, test_last_epochs=5)
    with pytest.raises(ConfigError, match="excludes early_stopping"):
        parse_config(
            {
                **config().model_dump(),
                "data": {"dataset": "fashion-mnist"},
                "train": {"epochs": 4, "test_last_epochs": 2, "early_stopping": {"patience": 1}},
            }
        )


def plateau_config(**optim):
    raw = config(epochs=6).model_dump()
    raw["data"]["val_fraction"] = 0.2
    raw["optim"] = {"lr": 0.05, "schedule": "plateau", "plateau_factor": 0.5, "plateau_patience": 0, **optim}
    return parse_config(raw)


def test_plateau_schedule_cuts_the_rate_after_each_epoch_without_improvement_as_reduce_lr_on_plateau():
    c = plateau_config(plateau_metric="val.item.acc", min_lr=0.02)
    result = train(c)
    rates = [r["lr"] for r in result.history]  # the rate each epoch trained with
    # Replay PyTorch's ReduceLROnPlateau on the recorded validation accuracy (mode max, patience 0, threshold 1e-4).
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    replay = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=0, min_lr=0.02)
    expected = []
    for record in result.history:
        expected.append(optimizer.param_groups[0]["lr"])
        replay.step(record["val.item.acc"])
    assert rates == pytest.approx(expected)
    assert min(rates) >= 0.02


def test_plateau_schedule_needs_a_validation_metric_that_exists():
    with pytest.raises(ConfigError, match=r"optim\.plateau_metric"):
        plateau_config(plateau_metric="val.item.mae")
    with pytest.raises(ConfigError, match="a schedule never reads test"):
        plateau_config(plateau_metric="test.item.acc")
    raw = plateau_config().model_dump()
    raw["data"]["val_fraction"] = 0.0
    with pytest.raises(ConfigError, match="needs a validation split"):
        parse_config(raw)


def test_method_lr_sets_the_learning_rate_of_the_methods_own_parameters_only():
    raw = config().model_dump()
    raw["optim"] = {"lr": 0.001, "method_lr": 0.025}
    c = parse_config(raw)
    optimizer = build_optimizer(
        c.optim, [torch.nn.Parameter(torch.zeros(2))], extra=[torch.nn.Parameter(torch.zeros(3))]
    )
    assert [g["lr"] for g in optimizer.param_groups] == [0.001, 0.025]
    assert optimizer.param_groups[1]["weight_decay"] == 0.0
    default = build_optimizer(
        config().optim, [torch.nn.Parameter(torch.zeros(2))], extra=[torch.nn.Parameter(torch.zeros(1))]
    )
    assert [g["lr"] for g in default.param_groups] == [config().optim.lr] * 2
