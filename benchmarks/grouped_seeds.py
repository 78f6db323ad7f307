"""Grouped seeds: K seeds of each MNIST pair net trained as one group vs K sequential solo runs, in one process.

The reference protocol of the mnist-pairs study: 1000 training pairs, batch 100, Adam 1e-3, 50 epochs, weight
sharing and the auxiliary loss on. Both paths go through ``mtlab.train.run.train_runs`` (data draw, split, model
build, training, final test evaluation); the group is stacked whatever ``--group-seeds auto`` would decide, and
the line says what auto does for that net (on a CPU it trains conv nets one by one, so a study gains the larger of
the ratio and 1). Targets on a 2-core CPU: >= 4x for the
FC nets, >= 1.5x for the CNN.

    python benchmarks/grouped_seeds.py [--seeds 10] [--epochs 50] [--nets "shallow FC,deep FC,CNN"]

Also compares the grouped numbers with the solo ones: the largest absolute difference of any test metric (float
rounding differs between batched and single matrix products and grows over many steps) and the mean accuracies.
"""

from __future__ import annotations

import argparse
import time

import torch

from mtlab.study.catalog import find_study
from mtlab.study.spec import expand
from mtlab.train.replicas import stacking_pays
from mtlab.train.run import train_runs


def configs_for(net: str, seeds: int, epochs: int):
    spec, _ = find_study("mnist-pairs")
    runs = expand(spec, "full", {"train.epochs": epochs})
    chosen = [r for r in runs if r.variant == f"{net}, sharing on, aux on"][:seeds]
    if len(chosen) < seeds:
        raise SystemExit(f"the mnist-pairs study has fewer than {seeds} seeds")
    return [r.config for r in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--nets", default="shallow FC,deep FC,CNN")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.seeds} seeds x {args.epochs} epochs")
    train_runs(configs_for("shallow FC", 1, 1), [None])  # warm-up: data files parsed and cached, kernels loaded
    for net in args.nets.split(","):
        configs = configs_for(net, args.seeds, args.epochs)
        start = time.perf_counter()
        solo = [train_runs([c], [None])[0] for c in configs]
        solo_seconds = time.perf_counter() - start
        start = time.perf_counter()
        grouped = train_runs(configs, [None] * len(configs), stacking="always")
        grouped_seconds = time.perf_counter() - start
        diff = max(
            abs(a.result.test[m] - b.result.test[m]) for a, b in zip(solo, grouped, strict=True) for m in a.result.test
        )
        solo_acc, grouped_acc = (sum(o.result.test["test.leq.acc"] for o in r) / len(r) for r in (solo, grouped))
        policy = "stacks" if stacking_pays(configs[0], torch.device("cpu")) else "trains one by one"
        print(
            f"{net} (auto {policy}): solo {solo_seconds:.1f} s, grouped {grouped_seconds:.1f} s, speed-up "
            f"{solo_seconds / grouped_seconds:.2f}x; mean test leq acc solo {100 * solo_acc:.2f}%, grouped "
            f"{100 * grouped_acc:.2f}%; max |grouped - solo| of test metrics {diff:.2e}"
        )


if __name__ == "__main__":
    main()
