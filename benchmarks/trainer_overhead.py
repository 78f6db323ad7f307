"""Trainer overhead: images/s of ``mtlab.train.fit`` vs a bare PyTorch loop over the same pre-loaded tensors.

Two models (the issue's targets): the Fashion-MNIST reference two-head CNN (batch 50) and the MNIST basics CNN
Conv(1->32,4) -> Conv(32->64,4,/2) -> Conv(64->128,4,/2) -> Dense 10 (batch 50). Both loops start from the same
initial weights and see the same number of images; they alternate (bare, fused bare, fit, bare, ...) so that drift
in the machine's speed hits all. Target: fit >= 0.9x the bare loop. ``fit`` uses PyTorch's fused Adam kernel; the
plain bare loop uses ``torch.optim.Adam``'s default, so the loop is also timed with the fused kernel, which
isolates mtlab's own overhead.

    python benchmarks/trainer_overhead.py [--images 6000] [--repeats 3] [--threads N]

Prints one line per model with both rates and their ratio. Uses the full datasets when mtlab finds them, and the
embedded Fashion-MNIST sample otherwise.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from mtlab.config import parse_config
from mtlab.data.batches import Normalizer
from mtlab.data.catalog import load_dataset
from mtlab.data.split import RunSplits
from mtlab.errors import DataError
from mtlab.models import build_model
from mtlab.train.fit import fit

FASHION = {
    "name": "fashion-reference",
    "data": {"dataset": "fashion-mnist", "val_fraction": 0.0},
    "model": {
        "trunk": {
            "type": "cnn",
            "conv": [{"filters": 32, "pool": 2}, {"filters": 64, "pool": 2}, {"filters": 128}],
            "dense": [3136],
        },
        "head": {"widths": [1024, 100]},
    },
    "loss": {"weights": {"item": 0.7, "group": 0.3}},
    "train": {"epochs": 1, "batch_size": 50},
}
MNIST_CNN = {
    "name": "mnist-cnn",
    "data": {"dataset": "mnist", "val_fraction": 0.0},
    "model": {
        "trunk": {
            "type": "cnn",
            "conv": [
                {"filters": 32, "kernel": 4, "padding": "valid"},
                {"filters": 64, "kernel": 4, "stride": 2, "padding": 0},
                {"filters": 128, "kernel": 4, "stride": 2, "padding": 0},
            ],
        }
    },
    "train": {"epochs": 1, "batch_size": 50},
}


def bare_loop(model, images, labels, weights, batch_size, lr, seed, fused=False) -> float:
    """The loop one writes by hand: pre-normalised float tensors, a permutation, forward, weighted CE, step.
    Returns images per second. ``fused`` gives it the fused Adam kernel that ``fit`` uses."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=fused)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    start = time.perf_counter()
    order = torch.randperm(images.shape[0], generator=generator)
    for i in range(0, images.shape[0], batch_size):
        index = order[i : i + batch_size]
        logits = model(images[index])
        loss = sum(w * F.cross_entropy(logits[t], labels[t][index]) for t, w in weights.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return images.shape[0] / (time.perf_counter() - start)


def fit_rate(model, splits, config, num_classes) -> float:
    """Images per second of ``fit``'s training pass (its own per-epoch timer; excludes the final test pass)."""
    result = fit(model, splits, config, num_classes=num_classes, device=torch.device("cpu"))
    return len(splits.train) / result.history[0]["seconds"]


def measure(raw: dict, n_images: int, repeats: int) -> tuple[str, float, float, float]:
    try:
        config = parse_config(raw)
        dataset = load_dataset(config.data)
    except DataError:
        raw = {**raw, "data": {**raw["data"], "dataset": "fashion-mnist-sample"}}
        if raw["name"] == "mnist-cnn":
            raw["tasks"] = ["item"]
        config = parse_config(raw)
        dataset = load_dataset(config.data)
    train = dataset.train.select(torch.arange(min(n_images, len(dataset.train))))
    splits = RunSplits(train=train, val=None, test=dataset.test.select(torch.arange(100)))
    num_classes = {t: task.num_classes for t, task in dataset.tasks.items()}
    torch.manual_seed(0)
    initial = build_model(config, dataset.tasks, dataset.input_shape)
    normalizer = Normalizer.fit(train.images)
    images = normalizer(train.images)  # the bare loop gets its inputs pre-normalised, for free
    weights = {t: config.loss.weights.get(t, 1.0) for t in config.task_names}
    bare, fused, mine = [], [], []
    batch = config.train.batch_size
    for r in range(repeats):
        bare.append(bare_loop(copy.deepcopy(initial), images, train.labels, weights, batch, 1e-3, r))
        fused.append(bare_loop(copy.deepcopy(initial), images, train.labels, weights, batch, 1e-3, r, fused=True))
        mine.append(fit_rate(copy.deepcopy(initial), splits, config.model_copy(update={"seed": r}), num_classes))
    name = f"{raw['name']} ({dataset.name}, {len(train)} images, batch {batch})"
    return name, statistics.median(bare), statistics.median(fused), statistics.median(mine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6000, help="training images per pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} passes each")
    for raw in (FASHION, MNIST_CNN):
        name, bare, fused, mine = measure(raw, args.images, args.repeats)
        print(
            f"{name}: bare loop {bare:,.0f} img/s, bare loop with fused Adam {fused:,.0f} img/s, mtlab fit "
            f"{mine:,.0f} img/s; ratio {mine / bare:.3f} (vs fused bare loop {mine / fused:.3f})"
        )


if __name__ == "__main__":
    main()
