"""The training loop: determinism, early stopping with best-state restore, divergence, schedules."""

from __future__ import annotations

import math

import pytest
import torch

from mtlab.config import parse_config
from mtlab.data.batches import Batches
from mtlab.data.dataset import Split
from mtlab.data.split import RunSplits
from mtlab.data.tasks import Task
from mtlab.models import build_model
from mtlab.train.fit import EarlyStopper, TrainingDiverged, as_task, evaluate, fit

TASKS = {"item": Task("item", tuple(map(str, range(10)))), "group": Task("group", ("a", "b", "c"))}
CLASSES = {t: task.num_classes for t, task in TASKS.items()}
CPU = torch.device("cpu")


def toy_splits(n=240, seed=0, learnable=True) -> RunSplits:
    """Images whose item class is written in their mean brightness (learnable) or random labels (not)."""
    g = torch.Generator().manual_seed(seed)

    def split(m):
        item = torch.randint(0, 10, (m,), generator=g)
        base = item if learnable else torch.randint(0, 10, (m,), generator=g)
        images = (base.view(m, 1, 1, 1) * 20 + torch.randint(0, 40, (m, 1, 8, 8), generator=g)).to(torch.uint8)
        return Split(images, {"item": item, "group": item % 3})

    return RunSplits(train=split(n), val=split(n // 4), test=split(n // 4))


def config(**train):
    raw = {
        "seed": train.pop("seed", 0),
        "data": {"dataset": "fashion-mnist-sample"},
        "model": {"trunk": {"type": "mlp", "widths": [32]}, "head": {"widths": [16], "dropout": 0.1}},
        "loss": {"weights": {"item": 0.7, "group": 0.3}},
        "optim": train.pop("optim", {"lr": 0.01}),
        "train": {"epochs": 3, "batch_size": 32, **train},
    }
    return parse_config(raw)


def run(cfg, splits=None):
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, TASKS, (1, 8, 8))
    return model, fit(model, splits or toy_splits(), cfg, tasks=CLASSES, device=CPU)


def test_same_seed_same_numbers_and_a_different_seed_differs():
    _, a = run(config(seed=1))
    _, b = run(config(seed=1))
    _, c = run(config(seed=2))
    strip = [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in a.history]
    assert strip == [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in b.history]
    assert a.test == b.test
    assert a.history[-1]["train.loss"] != c.history[-1]["train.loss"]


def test_history_records_every_task_split_and_learning_rate():
    _, result = run(config(optim={"lr": 0.01, "schedule": "cosine"}))
    record = result.history[0]
    for key in ("epoch", "lr", "seconds", "train.loss", "val.loss"):
        assert key in record
    for task in TASKS:
        for split in ("train", "val"):
            assert 0.0 <= record[f"{split}.{task}.acc"] <= 1.0
            assert record[f"{split}.{task}.loss"] > 0
    assert result.history[0]["lr"] == pytest.approx(0.01)
    assert result.history[-1]["lr"] < result.history[0]["lr"]  # cosine decays
    per_task = {f"test.{t}.{m}" for t in ("item", "group") for m in ("loss", "acc", "f1")}
    assert set(result.test) == {"test.loss"} | per_task
    assert sum(map(sum, result.confusion["item"])) == len(toy_splits().test)


def test_it_learns_a_learnable_task():
    _, result = run(config(epochs=15))
    assert result.test["test.item.acc"] > 0.5  # chance is 0.1
    assert result.history[-1]["train.loss"] < result.history[0]["train.loss"]


def test_early_stopping_restores_the_best_validation_state():
    # Random labels: the network can only memorise, so validation loss rises after a few epochs.
    splits = toy_splits(n=120, learnable=False)
    cfg = config(epochs=30, early_stopping={"metric": "val.loss", "patience": 3}, optim={"lr": 0.02})
    model, result = run(cfg, splits)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 3
    val_losses = [r["val.loss"] for r in result.history]
    assert result.best_epoch == 1 + min(range(len(val_losses)), key=val_losses.__getitem__)
    tasks = {t: as_task(t, n) for t, n in CLASSES.items()}
    objectives = {t: task.task_type.bind(task, [splits.train.labels[t]], CPU) for t, task in tasks.items()}
    batches = Batches(splits.val, 1000, result.normalizer)
    again = evaluate(model, batches, objectives, cfg.loss.weights).summary("val")[0]
    assert again["val.loss"] == pytest.approx(val_losses[result.best_epoch - 1], rel=1e-5)
    assert result.val["val.loss"] == pytest.approx(val_losses[result.best_epoch - 1])


def test_early_stopper_modes():
    stopper = EarlyStopper("max", patience=2)
    assert [stopper.update(e, v) for e, v in enumerate([0.5, 0.6, 0.6, 0.55], 1)] == [False, False, False, True]
    assert stopper.best_epoch == 2
    assert not EarlyStopper("min", patience=None).update(1, math.inf)


def test_diverging_run_raises_with_the_epoch():
    splits = toy_splits()
    bad = splits.train.images.float() / 255
    bad[0, 0, 0, 0] = math.inf
    splits = RunSplits(Split(bad, splits.train.labels), None, splits.test)
    cfg = parse_config(
        {
            **config().model_dump(mode="json"),
            "data": {"dataset": "fashion-mnist-sample", "normalize": False, "val_fraction": 0},
        }
    )
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        run(cfg, splits)


@pytest.mark.parametrize(
    "optim",
    [
        {"name": "sgd", "lr": 0.05, "nesterov": True},
        {"name": "adamw", "lr": 0.01, "weight_decay": 0.01, "schedule": "onecycle", "grad_clip": 1.0},
    ],
)
def test_other_optimisers_and_schedules_train(optim):
    _, result = run(config(optim=optim, epochs=4))
    assert result.history[-1]["train.loss"] < result.history[0]["train.loss"]
