"""How many finished runs per second the single-writer study store sustains (for docs/scaling.md).

Each recorded run is shaped like a CIFAR-100 hierarchy run at its full budget: 100 epochs of history (train and
validation loss and accuracy per task, lr, seconds: 14 values an epoch), test and validation metrics, a 100x100 and
a 20x20 confusion matrix, one transaction per run as the driver writes it (``synchronous=FULL``, WAL), and, in a
second pass, its run directory too (config, meta, history, metrics, and a checkpoint of ``--checkpoint-mb``).

    python benchmarks/store_throughput.py [--runs 200] [--checkpoint-mb 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mtlab.data.batches import Normalizer
from mtlab.study.catalog import find_study
from mtlab.study.spec import expand
from mtlab.study.store import ResultStore
from mtlab.train.fit import FitResult
from mtlab.train.rundir import RunDirectory


def fake_result(epochs: int = 100) -> FitResult:
    history = []
    for epoch in range(1, epochs + 1):
        record = {"epoch": epoch, "lr": 5e-4, "seconds": 30.0, "train.loss": 1.0, "val.loss": 1.1}
        for task in ("fine", "coarse"):
            record |= {f"{s}.{task}.{m}": 0.5 for s in ("train", "val") for m in ("loss", "acc")}
        history.append(record)
    test = {"test.loss": 1.0} | {f"test.{t}.{m}": 0.5 for t in ("fine", "coarse") for m in ("loss", "acc")}
    confusion = {"fine": [[1] * 100 for _ in range(100)], "coarse": [[5] * 20 for _ in range(20)]}
    val = {k: v for k, v in history[-1].items() if k.startswith("val.")}
    normalizer = Normalizer(torch.ones(1, 3, 1, 1), torch.zeros(1, 3, 1, 1))
    return FitResult(history, epochs, False, test, confusion, normalizer, val, 3000.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--checkpoint-mb", type=float, default=5.0)
    args = parser.parse_args()
    spec, _ = find_study("cifar100-hierarchy")
    runs = (expand(spec, "full") * (args.runs // 18 + 1))[: args.runs]
    result = fake_result()
    state = {"w": torch.zeros(int(args.checkpoint_mb * 2**20 / 4))}
    with tempfile.TemporaryDirectory() as tmp:
        for with_dirs in (False, True):
            path = Path(tmp) / f"store-{with_dirs}.sqlite"
            with ResultStore(path) as store:
                unique = {r.run_id: r for r in runs}
                store.sync_runs(unique.values())
                start = time.perf_counter()
                for i, run in enumerate(runs):
                    if with_dirs:
                        run_dir = RunDirectory(Path(tmp) / "runs" / f"{i}", overwrite=True)
                        run_dir.start(run.config, argv=[], environment={}, origin="x")
                        run_dir.finish(result, state_dict=state, extras={})
                    with store.atomic():
                        store.record_done(run.run_id, result, parameters=1, environment={"device": "cuda"})
                seconds = time.perf_counter() - start
            what = f"store + run directory ({args.checkpoint_mb:g} MB checkpoint)" if with_dirs else "store only"
            print(f"{what}: {args.runs / seconds:.1f} runs/s ({1000 * seconds / args.runs:.1f} ms per run)")


if __name__ == "__main__":
    main()
