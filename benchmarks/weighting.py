"""Weighting methods: time per training step and peak memory of every method, as ratios to ``fixed``.

Two models: the mnist-pairs CNN with weight sharing and the auxiliary loss (3 tasks, batch 100 pairs) and the
fashion-mtl two-head CNN of the quick budget (2 tasks, batch 50); each solo (K = 1) and stacked (K = 10, as
``--group-seeds on`` trains it). A step is what ``fit`` runs per batch (forward, the method's step strategy, fused
Adam). Inputs are random tensors of the datasets' shapes: a step's cost does not depend on the pixels.

Each (model, K, method) runs in a fresh process, so that its peak memory is its own: the growth of the process's
maximum resident set over the timed steps, beyond what model, data and optimiser held before the first step.
Targets (issue 9): gradient-based methods at most (T + 1)x the time of fixed and 1.5x its peak memory; loss-based
at most 1.1x in time - except the bilevel ``auto_lambda``, whose look-ahead adds four forward and two backward
passes per step. Every registered method is measured unless ``--methods`` names some.

    python benchmarks/weighting.py [--steps 20] [--models pairs-cnn,fashion] [--replicas 1,10] [--methods a,b]
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time

import torch
from machine import cpu_summary

MODELS = {
    "pairs-cnn": ("mnist-pairs", "full", "CNN, sharing on, aux on", (2, 14, 14)),
    "fashion": ("fashion-mtl", "quick", "two-head, lambda=0.5", (1, 28, 28)),
}


def config_for(model: str, method: str):
    from mtlab.config import parse_config
    from mtlab.study.catalog import find_study
    from mtlab.study.spec import expand

    study, budget, variant, _ = MODELS[model]
    spec, _ = find_study(study)
    run = next(r for r in expand(spec, budget) if r.variant == variant)
    raw = run.config.model_dump(mode="json")
    from mtlab.weighting import method_class

    # The study's loss weights, except for the methods that refuse them (invariant to each loss's scale).
    weights = {} if method_class(method).Options.weights_refused else raw["loss"]["weights"]
    raw["loss"] = {"method": method, "weights": weights}
    return parse_config(raw)


def one(model: str, replicas: int, method: str, steps: int) -> dict[str, float]:
    """Time ``steps`` steps of one method in this process; peak memory growth in MiB."""
    from mtlab.data.tasks import Task
    from mtlab.models import build_model
    from mtlab.train.optim import build_optimizer
    from mtlab.train.replicas import parameter_views, replicate
    from mtlab.train.step import TaskLosses, make_step
    from mtlab.weighting import create_method

    config = config_for(model, method)
    shape = MODELS[model][3]
    tasks = {"leq": Task("leq", ("a > b", "a <= b")), "digit_a": Task("d", tuple("0123456789")),
             "digit_b": Task("d", tuple("0123456789")), "item": Task("item", tuple("0123456789")),
             "group": Task("group", ("shoes", "gendered", "unisex"))}
    names = config.task_names
    models = []
    for k in range(replicas):
        torch.manual_seed(k)
        models.append(build_model(config, tasks, shape))
    stacked = replicate(models)
    device = torch.device("cpu")
    method_module = create_method(config.loss, names, replicas)
    views = parameter_views(models[0], stacked)
    method_module.bind(views)
    optimizer = build_optimizer(config.optim, stacked.parameters(), extra=method_module.parameters())
    batch = config.train.batch_size
    g = torch.Generator().manual_seed(0)
    x = torch.randn(replicas, batch, *shape, generator=g)
    y = {t: torch.randint(0, tasks[t].num_classes, (replicas, batch), generator=g) for t in names}
    objectives = {t: tasks[t].task_type.bind(tasks[t], list(y[t]), device) for t in names}
    # A bilevel method (auto_lambda) looks ahead on a meta batch before each step: a second batch of the same shape.
    meta = (torch.randn_like(x), {t: v.roll(1, dims=1) for t, v in y.items()})
    losses = TaskLosses(config, objectives, device)
    step = make_step(stacked, models[0], method_module, optimizer, losses, views, grad_clip=None,
                     meta_batches=itertools.repeat(meta), steps_per_epoch=10**9)  # no epoch ends here
    for _ in range(3):  # warm-up: kernels chosen, optimiser state allocated
        step(x, y)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    seconds = (time.perf_counter() - start) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    resident = peak / 1024
    return {"ms": 1000 * seconds, "peak_growth_mib": (peak - before) / 1024, "peak_mib": resident, "tasks": len(names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", default="pairs-cnn,fashion")
    parser.add_argument("--replicas", default="1,10")
    parser.add_argument("--methods", default="")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "K", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.one[2], args.steps)))
        return
    from mtlab.weighting import registered_methods

    methods = args.methods.split(",") if args.methods else registered_methods()
    methods = ["fixed", *[m for m in methods if m != "fixed"]]
    cpu = cpu_summary()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {cpu}")
    for model in args.models.split(","):
        for replicas in (int(k) for k in args.replicas.split(",")):
            rows = {}
            for method in methods:
                out = subprocess.run(
                    [sys.executable, __file__, "--steps", str(args.steps), "--one", model, str(replicas), method],
                    capture_output=True, text=True, check=True,
                )
                rows[method] = json.loads(out.stdout.strip().splitlines()[-1])
            base = rows["fixed"]
            print(f"\n{model}, K = {replicas}, T = {base['tasks']}: fixed {base['ms']:.1f} ms/step, peak RSS "
                  f"{base['peak_mib']:.0f} MiB")
            print(f"{'method':<12} {'ms/step':>8} {'x fixed':>8} {'peak MiB':>9} {'x fixed':>8}")
            for method, r in rows.items():
                print(f"{method:<12} {r['ms']:8.1f} {r['ms'] / base['ms']:8.2f} {r['peak_mib']:9.0f} "
                      f"{r['peak_mib'] / base['peak_mib']:8.2f}")


if __name__ == "__main__":
    main()
