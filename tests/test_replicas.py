"""Training K seeds in lockstep: replica k reproduces the solo run of seed k, and replicas stay independent."""

from __future__ import annotations

import pytest
import torch

from mtlab import seeding
from mtlab.config import parse_config
from mtlab.data.dataset import Split
from mtlab.data.split import RunSplits
from mtlab.data.tasks import Task
from mtlab.models import build_model
from mtlab.train.fit import TrainingDiverged, fit, fit_replicas
from mtlab.train.replicas import StackedReplicas, clip_grad_norms, stacking_pays

CPU = torch.device("cpu")
DIGITS = Task("d", tuple("0123456789"))
PAIR_TASKS = {"leq": Task("leq", ("a > b", "a <= b")), "digit_a": DIGITS, "digit_b": DIGITS}
FASHION_TASKS = {"item": Task("item", tuple("0123456789")), "group": Task("group", ("a", "b", "c"))}


def pair_splits(seed: int) -> RunSplits:
    """Random 'pairs' whose digits are written in the images, so the nets can learn something."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        digits = torch.randint(0, 10, (n, 2), generator=g)
        images = torch.rand(n, 2, 14, 14, generator=g) * 0.3 + digits.view(n, 2, 1, 1) / 10
        labels = {"leq": (digits[:, 0] <= digits[:, 1]).long(), "digit_a": digits[:, 0], "digit_b": digits[:, 1]}
        return Split(images, labels)

    return RunSplits(split(200), split(50), split(60))


def fashion_splits(seed: int) -> RunSplits:
    g = torch.Generator().manual_seed(seed)

    def split(n):
        item = torch.randint(0, 10, (n,), generator=g)
        images = (item.view(n, 1, 1, 1) * 20 + torch.randint(0, 50, (n, 1, 12, 12), generator=g)).to(torch.uint8)
        return Split(images, {"item": item, "group": item % 3})

    return RunSplits(split(160), split(40), split(40))


PAIR_NETS = {
    "shallow FC": {"branch": {"type": "mlp", "widths": [50]}, "head": {"widths": [20]}},
    "CNN": {
        "branch": {
            "type": "cnn",
            "conv": [{"filters": 4, "padding": 1, "pool": 2}, {"filters": 8, "pool": 7}],
            "dense": [16],
        },
        "head": {"widths": [8]},
    },
}


def pair_config(net: str, seed: int, **train):
    return parse_config(
        {
            "seed": seed,
            "data": {"dataset": "mnist-pairs", "normalize": False},
            "model": {"kind": "pairs", "weight_sharing": True, **PAIR_NETS[net]},
            "loss": {"weights": {"leq": 0.5, "digit_a": 0.25, "digit_b": 0.25}},
            "optim": {"lr": 0.003, "grad_clip": 0.5},
            "train": {"epochs": 4, "batch_size": 32, **train},
        }
    )


def bn_cnn_config(seed: int, **train):
    return parse_config(
        {
            "seed": seed,
            "data": {"dataset": "fashion-mnist-sample", "augment": {"crop_padding": 1, "horizontal_flip": True}},
            "model": {
                "trunk": {
                    "type": "cnn",
                    "conv": [
                        {"filters": 4, "pool": 2, "batch_norm": True},
                        {"filters": 8, "pool": 2, "batch_norm": True},
                    ],
                },
                "head": {"widths": [16], "batch_norm": True},
            },
            "optim": {"name": "adamw", "lr": 0.003, "schedule": "cosine", "weight_decay": 1e-4},
            "train": {"epochs": 4, "batch_size": 32, **train},
        }
    )


def build(config, tasks, shape):
    torch.manual_seed(seeding.stream_seed(config.seed, "init"))
    return build_model(config, tasks, shape)


def solo_and_group(configs, tasks, shape, make_splits):
    classes = {t: task.num_classes for t, task in tasks.items()}
    solo = [fit(build(c, tasks, shape), make_splits(c.seed), c, tasks=classes, device=CPU) for c in configs]
    group = fit_replicas(
        [build(c, tasks, shape) for c in configs],
        [make_splits(c.seed) for c in configs],
        configs,
        tasks=classes,
        device=CPU,
    )
    return solo, group


ARGMAX_METRICS = (".acc", ".f1")
"""Metrics of the predicted class. A stacked (batched) matrix product rounds differently from a solo one, so where
two of an example's logits tie to float precision (a barely trained network predicting one class nearly everywhere)
the argmax of the two runs can differ for that example: these may move by one example's worth (pcgrad's third
replica after 2 epochs: validation F1 0.0261 vs 0.0250, with every loss equal to 1e-6). Losses are held to 1e-4."""


def _tolerance(key: str) -> dict[str, float]:
    return {"rel": 1e-4, "abs": 2e-3 if key.endswith(ARGMAX_METRICS) else 1e-5}


def assert_same(solo, grouped):
    assert len(solo.history) == len(grouped.history)
    assert solo.best_epoch == grouped.best_epoch
    for a, b in zip(solo.history, grouped.history, strict=True):
        for key, value in a.items():
            if not key.endswith("seconds"):  # wall times (per epoch, per step)
                assert b[key] == pytest.approx(value, **_tolerance(key)), key
    for key, value in solo.test.items():
        assert grouped.test[key] == pytest.approx(value, **_tolerance(key)), key


@pytest.mark.parametrize("net", sorted(PAIR_NETS))
def test_pair_net_replicas_equal_solo_runs(net):
    configs = [pair_config(net, seed) for seed in (0, 1, 2)]
    solo, group = solo_and_group(configs, PAIR_TASKS, (2, 14, 14), pair_splits)
    for s, g in zip(solo, group, strict=True):
        assert_same(s, g)
    assert solo[0].history[-1]["train.loss"] != solo[1].history[-1]["train.loss"]  # seeds really differ


def test_batch_norm_cnn_replicas_equal_solo_runs_with_augmentation_and_early_stopping():
    stop = {"early_stopping": {"metric": "val.item.acc", "patience": 1}, "epochs": 6}
    configs = [bn_cnn_config(seed, **stop) for seed in (3, 4)]
    solo, group = solo_and_group(configs, FASHION_TASKS, (1, 12, 12), fashion_splits)
    for s, g in zip(solo, group, strict=True):
        assert_same(s, g)
        assert s.confusion == g.confusion


def test_a_diverging_replica_fails_alone():
    configs = [pair_config("shallow FC", seed) for seed in (0, 1)]
    splits = [pair_splits(0), pair_splits(1)]
    bad = splits[1].train.images.clone()
    bad[0, 0, 0, 0] = float("nan")
    splits[1] = RunSplits(Split(bad, splits[1].train.labels), splits[1].val, splits[1].test)
    classes = {t: task.num_classes for t, task in PAIR_TASKS.items()}
    models = [build(c, PAIR_TASKS, (2, 14, 14)) for c in configs]
    ok, failed = fit_replicas(models, splits, configs, tasks=classes, device=CPU)
    assert isinstance(failed, TrainingDiverged)
    solo = fit(build(configs[0], PAIR_TASKS, (2, 14, 14)), pair_splits(0), configs[0], tasks=classes, device=CPU)
    assert_same(solo, ok)


def test_replicas_must_share_everything_but_the_seed():
    configs = [pair_config("shallow FC", 0), pair_config("shallow FC", 1, epochs=5)]
    classes = {t: task.num_classes for t, task in PAIR_TASKS.items()}
    with pytest.raises(ValueError, match="same config except for the seed"):
        fit_replicas(
            [build(c, PAIR_TASKS, (2, 14, 14)) for c in configs],
            [pair_splits(0)] * 2,
            configs,
            tasks=classes,
            device=CPU,
        )


def test_gradient_clipping_is_per_replica():
    models = [torch.nn.Linear(3, 2) for _ in range(2)]
    stacked = StackedReplicas(models)
    for p in stacked.parameters():
        p.grad = torch.ones_like(p)
    stacked.params["weight"].grad[1] *= 100
    clip_grad_norms(stacked, 1.0)
    norms = stacked.grad_norms()
    assert norms[0].item() == pytest.approx(1.0, rel=1e-5)
    assert norms[1].item() == pytest.approx(1.0, rel=1e-5)
    stacked.params["weight"].grad[0].fill_(0.01)
    stacked.params["bias"].grad[0].fill_(0.01)
    clip_grad_norms(stacked, 1.0)
    assert stacked.params["weight"].grad[0].abs().max().item() == pytest.approx(0.01)  # small norms are left alone


def test_stacking_pays_for_dense_nets_on_the_cpu_and_for_every_net_on_gpus():
    dense, conv = pair_config("shallow FC", 0), pair_config("CNN", 0)
    assert stacking_pays(dense, CPU)
    assert not stacking_pays(bn_cnn_config(0), CPU)
    assert not stacking_pays(conv, CPU)
    assert stacking_pays(conv, torch.device("cuda"))  # only the device type is looked at


@pytest.mark.parametrize(("stacking", "sizes"), [("auto", [1, 1]), ("always", [2])])
def test_conv_seeds_train_one_by_one_on_the_cpu_unless_stacking_is_forced(stacking, sizes, monkeypatch):
    import mtlab.train.run as run

    calls = []

    def recording_fit(models, *args, **kwargs):
        calls.append(len(models))
        return fit_replicas(models, *args, **kwargs)

    monkeypatch.setattr(run, "fit_replicas", recording_fit)
    tiny = {"dataset": "fashion-mnist-sample", "train_subset": 64, "test_subset": 32}
    configs = [parse_config({**bn_cnn_config(seed, epochs=1).model_dump(mode="json"), "data": tiny}) for seed in (0, 1)]
    outcomes = run.train_runs(configs, [None, None], stacking=stacking)
    assert calls == sizes
    assert all(0 <= o.result.test["test.item.acc"] <= 1 for o in outcomes)
