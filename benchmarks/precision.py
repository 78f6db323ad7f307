"""bf16 vs fp32 (and channels-last) training throughput and accuracy, in one process.

Models: the CIFAR-100 hierarchy reference network (shared trunk, no reuse; on random 32x32 images of the CIFAR
shape, since CIFAR-100 cannot be downloaded here - throughput only) and the Fashion-MNIST reference two-head CNN
(real data: the embedded sample, or the full set when found - throughput and test accuracy after a fixed budget).

    python benchmarks/precision.py [--images 1000] [--cifar-images 200] [--epochs 2]

On a CPU without native bf16 arithmetic (no AVX512-BF16 / AMX) bf16 is emulated and an order of magnitude slower,
hence the small defaults; each line is printed as soon as it is measured.
"""

from __future__ import annotations

import argparse

import torch

from mtlab.config import parse_config
from mtlab.data.catalog import load_dataset
from mtlab.data.dataset import Split
from mtlab.data.split import RunSplits, carve_splits
from mtlab.data.tasks import Task
from mtlab.models import build_model
from mtlab.study.catalog import find_study
from mtlab.train.fit import fit


def cifar_like(n: int) -> tuple[dict[str, Task], RunSplits]:
    g = torch.Generator().manual_seed(0)

    def split(m):
        fine = torch.randint(0, 100, (m,), generator=g)
        images = torch.randint(0, 256, (m, 3, 32, 32), generator=g, dtype=torch.uint8)
        return Split(images, {"fine": fine, "coarse": fine // 5})

    tasks = {"fine": Task("fine", tuple(map(str, range(100)))), "coarse": Task("coarse", tuple(map(str, range(20))))}
    return tasks, RunSplits(split(n), None, split(200))


def measure(name, raw, tasks, splits, epochs, variants):
    rates = {}
    for label, train in variants.items():
        config = parse_config({**raw, "train": {**raw["train"], **train, "epochs": epochs}})
        torch.manual_seed(0)
        model = build_model(config, tasks, tuple(splits.train.images.shape[1:]))
        result = fit(
            model, splits, config, num_classes={t: k.num_classes for t, k in tasks.items()}, device=torch.device("cpu")
        )
        seconds = sum(r["seconds"] for r in result.history)
        rates[label] = (len(splits.train) * epochs / seconds, result.test)
    base_rate, base_test = rates["fp32"]
    for label, (rate, test) in rates.items():
        accs = ", ".join(
            f"{k.split('.')[1]} {100 * v:.2f}% ({100 * (v - base_test[k]):+.2f} pp)"
            for k, v in test.items()
            if k.endswith(".acc")
        )
        print(f"{name} {label}: {rate:,.0f} img/s ({rate / base_rate:.2f}x fp32); test {accs}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="Fashion-MNIST training images")
    parser.add_argument("--cifar-images", type=int, default=200, help="random CIFAR-shaped images (throughput only)")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    variants = {
        "fp32": {},
        "bf16": {"precision": "bf16"},
        "fp32 channels-last": {"channels_last": True},
        "bf16 channels-last": {"precision": "bf16", "channels_last": True},
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs")

    hierarchy = find_study("cifar100-hierarchy")[0].base
    raw = {**hierarchy, "data": {"dataset": "cifar100", "val_fraction": 0.0}, "train": {"batch_size": 100}}
    tasks, splits = cifar_like(args.cifar_images)
    measure("cifar100-hierarchy shared (random images)", raw, tasks, splits, args.epochs, variants)

    fashion = find_study("fashion-mtl")[0].base
    raw = {
        **fashion,
        "data": {"dataset": "fashion-mnist-sample", "val_fraction": 0.0},
        "loss": {"weights": {"item": 0.7, "group": 0.3}},
        "train": {"batch_size": 50},
    }
    config = parse_config(raw)
    dataset = load_dataset(config.data)
    splits = carve_splits(dataset, val_fraction=0.0, seed=0, train_subset=min(args.images, len(dataset.train)))
    measure("fashion-mtl reference (embedded sample)", raw, dataset.tasks, splits, args.epochs, variants)


if __name__ == "__main__":
    main()
