"""The whole mnist-pairs study through mtlab vs the same protocol as a straightforward sequential PyTorch script.

The script is the kind the original authors wrote: one model at a time, pre-loaded tensors, a batch loop with
``narrow``, Adam 1e-3, batch 100, cross-entropy on the comparison (plus 0.5 * main + 0.5 * mean(aux) with the
auxiliary loss), the test accuracy read at the last epoch. mtlab runs the built-in ``mnist-pairs`` study at its
``full`` budget (12 variants x 10 seeds = 120 runs, 1000 pairs, 50 epochs) with seed grouping into a fresh study
directory, store and run directories included, with the default executor (``--workers auto``: one single-threaded
worker process per core) unless ``--workers`` says otherwise. Target: >= 2x faster end to end in fp32 (>= 3x with
``--precision bf16`` on a CPU with native bf16, AMX or AVX512-BF16).

    python benchmarks/study_vs_script.py [--seeds 10] [--epochs 50] [--workers auto] [--precision fp32] [--skip-script]

Prints the absolute minutes of both, their ratio, and the mean test accuracy per variant of both (they train the
same networks on the same kind of data; their numbers agree in distribution, not run by run).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mtlab.data.catalog import load_dataset
from mtlab.data.mnist import MnistData
from mtlab.data.pairs import make_pairs
from mtlab.study.catalog import find_study
from mtlab.study.runner import run_study
from mtlab.study.store import ResultStore


class Branch(nn.Module):
    """A digit branch: 14x14 image -> 10 logits, as in the original script."""

    def __init__(self, net: str):
        super().__init__()
        if net == "shallow FC":
            self.layers = nn.Sequential(nn.Flatten(), nn.Linear(196, 500), nn.ReLU(), nn.Linear(500, 10))
        elif net == "deep FC":
            widths = [196, 300, 100, 70, 30, 20]
            layers: list[nn.Module] = [nn.Flatten()]
            for a, b in itertools.pairwise(widths):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.layers = nn.Sequential(*layers, nn.Linear(20, 10))
        else:
            self.layers = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(4),
                nn.Flatten(), nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10),
            )  # fmt: skip

    def forward(self, x):
        return self.layers(x)


class PairNet(nn.Module):
    def __init__(self, net: str, sharing: bool):
        super().__init__()
        self.a = Branch(net)
        self.b = self.a if sharing else Branch(net)
        head = {"shallow FC": [20, 50], "deep FC": [20, 30, 20, 10], "CNN": [20, 32]}[net]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(head):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.head = nn.Sequential(*layers, nn.Linear(head[-1], 2))

    def forward(self, x):
        da, db = self.a(x[:, 0:1]), self.b(x[:, 1:2])
        return self.head(torch.cat([da, db], 1)), da, db


NETS = ("shallow FC", "deep FC", "CNN")


def script(seeds: int, epochs: int, nets: tuple[str, ...] = NETS) -> tuple[float, dict[str, list[float]]]:
    """The sequential script; returns (seconds, test accuracy of each seed per variant)."""
    mnist = load_dataset(MnistData(dataset="mnist"))
    start = time.perf_counter()
    accuracy: dict[str, list[float]] = {}
    for net in nets:
        for sharing in (False, True):
            for aux in (False, True):
                values = []
                for seed in range(seeds):
                    pairs = make_pairs(mnist, 1000, seed)
                    x, y = pairs.train.images, pairs.train.labels
                    torch.manual_seed(seed)
                    model = PairNet(net, sharing)
                    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
                    for _ in range(epochs):
                        for b in range(0, x.size(0), 100):
                            out, da, db = model(x.narrow(0, b, 100))
                            loss = F.cross_entropy(out, y["leq"].narrow(0, b, 100))
                            if aux:
                                loss = 0.5 * loss + 0.25 * (
                                    F.cross_entropy(da, y["digit_a"].narrow(0, b, 100))
                                    + F.cross_entropy(db, y["digit_b"].narrow(0, b, 100))
                                )
                            optimizer.zero_grad()
                            loss.backward()
                            optimizer.step()
                    with torch.no_grad():
                        out, _, _ = model(pairs.test.images)
                        values.append((out.argmax(1) == pairs.test.labels["leq"]).float().mean().item())
                name = f"{net}, sharing {'on' if sharing else 'off'}, aux {'on' if aux else 'off'}"
                accuracy[name] = values
    return time.perf_counter() - start, accuracy


def study(
    seeds: int, epochs: int, workers: str, precision: str, nets: tuple[str, ...] = NETS
) -> tuple[float, dict[str, list[float]], dict]:
    """The built-in study through mtlab; returns (seconds, test accuracies per variant, executor description)."""
    spec, _ = find_study("mnist-pairs")
    budgets = {**spec.budgets, "full": spec.budgets["full"].model_copy(update={"seeds": seeds})}
    variants = {name: v for name, v in spec.variants.items() if name in nets}
    spec = spec.model_copy(update={"budgets": budgets, "variants": variants})
    overrides = {"train.epochs": epochs, "train.precision": precision}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_study(spec, Path(tmp), budget="full", overrides=overrides, workers=workers)
        seconds = time.perf_counter() - start
        with ResultStore(Path(tmp) / "results.sqlite") as store:
            m = store.metrics_frame()
            executor = store.info()["executor"]
    leq = m[(m.split == "test") & (m.task == "leq") & (m.metric == "acc")]
    return seconds, leq.groupby("variant", sort=False)["value"].apply(list).to_dict(), executor


def cpu_description() -> str:
    """The CPU model and the flags that decide the fast paths (AVX2 / AVX-512 / native bf16 / AMX)."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    shown = [f for f in wanted if f in flags] or ["(none of " + ", ".join(wanted) + ")"]
    return f"{model}; {len(os.sched_getaffinity(0))} usable cores; flags {' '.join(shown)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--workers", default="auto", help="mtlab's --workers (default auto)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="mtlab's --precision")
    parser.add_argument("--skip-script", action="store_true", help="time only mtlab")
    parser.add_argument("--nets", nargs="+", choices=NETS, default=list(NETS), help="only these nets' variants")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate mtlab and the script this many times, mtlab once more at the end (on a shared machine the "
        "load changes: each script time is compared with the mean of the mtlab times before and after it)",
    )
    args = parser.parse_args()
    nets = tuple(args.nets)
    print(cpu_description())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.seeds} seeds, {args.epochs} epochs; "
          f"nets: {', '.join(nets)}")  # fmt: skip
    mtlab_times, script_times = [], []
    mtlab_acc: dict[str, list[float]] = {}
    script_acc: dict[str, list[float]] = {}
    for round_ in range(args.rounds + (0 if args.skip_script else 1)):
        seconds, mtlab_acc, executor = study(args.seeds, args.epochs, args.workers, args.precision, nets)
        mtlab_times.append(seconds)
        print(f"mtlab run mnist-pairs ({args.precision}, {executor}): {seconds / 60:.2f} min", flush=True)
        if args.skip_script or round_ == args.rounds:
            break
        seconds, script_acc = script(args.seeds, args.epochs, nets)
        script_times.append(seconds)
        print(f"sequential script: {seconds / 60:.2f} min", flush=True)
    if not script_times:
        return
    ratios = [s / ((a + b) / 2) for s, a, b in zip(script_times, mtlab_times, mtlab_times[1:], strict=False)]
    if len(mtlab_times) == len(script_times):  # no closing mtlab pass
        ratios = [s / a for s, a in zip(script_times, mtlab_times, strict=True)]
    print("speed-up (script / mtlab): " + ", ".join(f"{r:.2f}x" for r in ratios))
    print("mean test accuracy (leq) per variant, mtlab - script, and the seed spread (std) of each:")
    for name, theirs in script_acc.items():
        ours = torch.tensor(mtlab_acc.get(name, [float("nan")]))
        theirs = torch.tensor(theirs)
        spread = f"std {100 * theirs.std():.2f} / {100 * ours.std():.2f}" if len(theirs) > 1 else ""
        print(
            f"  {name}: script {100 * theirs.mean():.2f}%  mtlab {100 * ours.mean():.2f}%  "
            f"({100 * (ours.mean() - theirs.mean()):+.2f} pp)  {spread}"
        )


if __name__ == "__main__":
    main()
