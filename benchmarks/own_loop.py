"""A training step in one's own loop: ``mtlab.Weighting`` against ``sum(losses).backward()`` and TorchJD's
``mtl_backward`` on the same model, batch and optimiser (issue 28, section 3).

The model is a CNN trunk shared by T linear heads (Fashion-MNIST-sized inputs, random data: the arithmetic is what is
timed). Each variant is timed over the same steps; the variants alternate round after round, so that drift in the
machine's speed hits all of them, and the median round is reported. Ratios are of times measured in this one run:
compare them, not the milliseconds, across machines; run it alone on the machine.

    python benchmarks/own_loop.py [--steps 20] [--rounds 5] [--batch 64] [--tasks 2] [--threads N]
        [--methods mean,upgrad,mgda,pcgrad,fixed,famo]

Prints the CPU's model and vector flags, the load average before and after, and per method: ms/step of the object,
and its ratio to ``sum(losses).backward()`` and to TorchJD's ``mtl_backward`` + ``jac_to_grad`` with the matching
aggregator (where TorchJD has one).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from machine import cpu_summary, load_average
from torch import nn

import mtlab

TORCHJD = {"mean": "Mean", "upgrad": "UPGrad", "mgda": "MGDA", "pcgrad": "PCGrad", "dualproj": "DualProj",
           "imtl_g": "IMTLG", "aligned_mtl": "AlignedMTL", "config": "ConFIG"}


class Net(nn.Module):
    def __init__(self, tasks: int):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
        )
        self.heads = nn.ModuleList(nn.Linear(128, 10) for _ in range(tasks))

    def forward(self, x, features: bool = False):
        h = self.trunk(x)
        out = [head(h) for head in self.heads]
        return (out, h) if features else out


def step_functions(method: str, model: Net, tasks: int):
    """name -> (model copy, one training step on (x, y)) for the three variants."""
    names = [f"t{i}" for i in range(tasks)]
    variants = {}

    plain = copy.deepcopy(model)
    plain_opt = torch.optim.SGD(plain.parameters(), lr=0.01)

    def summed(x, y):
        plain_opt.zero_grad()
        sum(F.cross_entropy(o, y[:, i]) for i, o in enumerate(plain(x))).backward()
        plain_opt.step()

    variants["sum().backward()"] = summed

    mine = copy.deepcopy(model)
    weighting = mtlab.Weighting(method, tasks=names, shared=mine.trunk.parameters(),
                                last_shared=mine.trunk[-2].parameters(), steps_per_epoch=10**9,
                                epochs=1)
    mine_opt = torch.optim.SGD([*mine.parameters(), *weighting.parameters()], lr=0.01)

    def own(x, y):
        def losses(half):
            xs, ys = half(x), half(y)
            return {t: F.cross_entropy(o, ys[:, i]) for i, (t, o) in enumerate(zip(names, mine(xs), strict=True))}

        if weighting.needs_meta_batch:
            weighting.look_ahead(mine, mine_opt, lambda b: losses(mtlab.Half(0, whole=True)), None, None)
        mine_opt.zero_grad()
        weighting.backward(losses)
        mine_opt.step()
        if weighting.needs_losses_after_step:
            with torch.no_grad():
                weighting.after_step(losses(mtlab.Half(0, whole=True)))
        else:
            weighting.after_step()

    variants["mtlab.Weighting"] = own

    if method in TORCHJD:
        try:
            from torchjd import aggregation
            from torchjd.autojac import jac_to_grad, mtl_backward
        except ImportError:
            return variants
        theirs = copy.deepcopy(model)
        theirs_opt = torch.optim.SGD(theirs.parameters(), lr=0.01)
        aggregator = getattr(aggregation, TORCHJD[method])()

        def torchjd(x, y):
            theirs_opt.zero_grad()
            out, features = theirs(x, features=True)
            mtl_backward([F.cross_entropy(o, y[:, i]) for i, o in enumerate(out)], features=features)
            jac_to_grad(list(theirs.trunk.parameters()), aggregator)
            theirs_opt.step()

        variants["torchjd mtl_backward"] = torchjd
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--methods", default="mean,upgrad,mgda,pcgrad,fixed,famo")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(cpu_summary())
    print(f"load average before: {load_average()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.batch, args.tasks), generator=g)
    torch.manual_seed(0)
    model = Net(args.tasks)
    print(f"{'method':<12} {'ms/step':>8} {'x sum':>7} {'x torchjd':>10}")
    for method in args.methods.split(","):
        variants = step_functions(method, model, args.tasks)
        for step in variants.values():  # warm-up
            step(x, y)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, step in variants.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    step(x, y)
                times[name].append((time.perf_counter() - start) / args.steps)
        median = {name: statistics.median(t) for name, t in times.items()}
        own = median["mtlab.Weighting"]
        jd = median.get("torchjd mtl_backward")
        ratio_jd = f"{own / jd:10.2f}" if jd else f"{'-':>10}"
        print(f"{method:<12} {own * 1e3:8.2f} {own / median['sum().backward()']:7.2f} {ratio_jd}")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
