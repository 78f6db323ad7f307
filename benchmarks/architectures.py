"""Training speed of every architecture of a study, in images per second relative to hard sharing, in one process.

Each variant of the study (default ``fashion-architectures``, its networks at the study's sizes) is built as the
study builds it and trained on random images of the dataset's shape - forward, loss over every task, backward,
fused Adam step - in rounds that alternate the variants (median of the rounds), so a busy machine slows all of them
alike. Also timed: K seeds stacked (``torch.func.vmap``, as ``--group-seeds on`` trains them) against K solo steps,
beside the decision ``--group-seeds auto`` makes for the variant on this device.

    python benchmarks/architectures.py [--study fashion-architectures] [--batch 100] [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mtlab.data.tasks import Task
from mtlab.models import build_model
from mtlab.study.catalog import find_study
from mtlab.study.spec import expand
from mtlab.train.optim import build_optimizer
from mtlab.train.replicas import StackedReplicas, stacking_pays

SHAPES = {"fashion-mnist": (1, 28, 28), "fashion-mnist-sample": (1, 28, 28), "cifar100": (3, 32, 32)}
CLASSES = {"fashion-mnist": {"item": 10, "group": 3}, "cifar100": {"fine": 100, "coarse": 20}}


def tasks_for(dataset: str) -> dict[str, Task]:
    classes = CLASSES["cifar100" if dataset == "cifar100" else "fashion-mnist"]
    return {name: Task(name, tuple(str(i) for i in range(n))) for name, n in classes.items()}


def step_seconds(forward, params, batch: torch.Tensor, labels: dict[str, torch.Tensor], steps: int, optim) -> float:
    """Seconds per training step of ``forward`` (images -> {task: logits}) after one warm-up step."""
    optimizer = build_optimizer(optim, params)

    def step():
        optimizer.zero_grad(set_to_none=True)
        out = forward(batch)
        loss = sum(F.cross_entropy(logits.flatten(0, -2), labels[t].flatten()) for t, logits in out.items())
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="fashion-architectures")
    parser.add_argument("--budget", default="full", help="budget whose networks are timed (default full)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round and variant")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3, help="K for the stacked-vs-solo column")
    args = parser.parse_args()
    spec, _ = find_study(args.study)
    first: dict[str, object] = {}
    for run in expand(spec, args.budget):
        first.setdefault(run.variant, run.config)
    cpu = torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    timings: dict[str, list[float]] = {v: [] for v in first}
    stacked: dict[str, list[float]] = {v: [] for v in first}
    models, counts = {}, {}
    for variant, config in first.items():
        shape = SHAPES[config.data.dataset]
        tasks = tasks_for(config.data.dataset)
        torch.manual_seed(0)
        models[variant] = [build_model(config, tasks, shape) for _ in range(args.seeds)]
        counts[variant] = sum(p.numel() for p in models[variant][0].parameters())
    config0 = next(iter(first.values()))
    shape, tasks = SHAPES[config0.data.dataset], tasks_for(config0.data.dataset)
    x = torch.randn(args.batch, *shape, generator=g)
    labels = {t: torch.randint(0, task.num_classes, (args.batch,), generator=g) for t, task in tasks.items()}
    xs = x.expand(args.seeds, *x.shape).contiguous()
    stacked_labels = {t: y.expand(args.seeds, -1) for t, y in labels.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; study {args.study} ({args.budget} networks), "
        f"batch {args.batch}, {args.steps} steps x {args.rounds} rounds, K = {args.seeds} for stacking"
    )
    for _ in range(args.rounds):
        for variant, config in first.items():
            model = models[variant][0].train()
            timings[variant].append(step_seconds(model, list(model.parameters()), x, labels, args.steps, config.optim))
            group = StackedReplicas(models[variant])
            group.train(True)
            stacked[variant].append(
                step_seconds(group, group.parameters(), xs, stacked_labels, max(1, args.steps // 2), config.optim)
            )
    base = statistics.median(timings["hard sharing"]) if "hard sharing" in timings else None
    print(f"{'variant':<14} {'params':>9} {'img/s':>8} {'vs hard':>8} {'K stacked / K solo':>19}  auto on this CPU")
    for variant, config in first.items():
        solo = statistics.median(timings[variant])
        group = statistics.median(stacked[variant])
        ratio = f"{base / solo:.2f}x" if base else "-"
        speedup = args.seeds * solo / group
        decision = "stack" if stacking_pays(config, cpu) else "one by one"
        print(
            f"{variant:<14} {counts[variant]:>9,} {args.batch / solo:>8.0f} {ratio:>8} {speedup:>18.2f}x  {decision}"
        )


if __name__ == "__main__":
    main()
