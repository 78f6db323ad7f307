"""Task-gradient conflict diagnostics: the time of a training step with ``train.diagnostics: {every: N}`` as a ratio
to the same step without (issue 12 target: at most 1.1x with ``every: 10``).

Models: the two-head MLP of the fashion-weighting quick budget (2 tasks, batch 100) and the mnist-pairs CNN with
weight sharing of pairs-weighting (3 tasks, batch 100 pairs, full width), solo (K = 1). Methods: ``fixed`` (a
loss-based method: a measured step pays T extra backward passes to the shared parameters) and ``upgrad`` (a
gradient-based method: the measured step reuses the Jacobian it computed anyway). Inputs are random tensors of the
datasets' shapes. Both steps are built in this process and timed in alternating rounds, so a neighbour's load
falls on both alike; the ratio is the median over rounds.

    python benchmarks/diagnostics.py [--steps 40] [--rounds 5] [--every 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

MODELS = {
    "fashion-mlp": ("fashion-weighting", "quick", "two-head, {method}", (1, 28, 28)),
    "pairs-cnn": ("pairs-weighting", "full", "{method}", (2, 14, 14)),
}


def build_step(model: str, method: str, every: int | None):
    from mtlab.config import parse_config
    from mtlab.data.tasks import Task
    from mtlab.models import build_model
    from mtlab.study.catalog import find_study
    from mtlab.study.spec import expand
    from mtlab.train.optim import build_optimizer
    from mtlab.train.replicas import parameter_views, replicate
    from mtlab.train.step import TaskLosses, make_step
    from mtlab.weighting import create_method

    study, budget, variant, shape = MODELS[model]
    spec, _ = find_study(study)
    run = next(r for r in expand(spec, budget) if r.variant == variant.format(method=method))
    raw = run.config.model_dump(mode="json")
    raw["train"]["diagnostics"] = {"every": every} if every else None
    config = parse_config(raw)
    ten = tuple("0123456789")
    tasks = {"leq": Task("leq", ("a > b", "a <= b")), "digit_a": Task("digit_a", ten), "digit_b": Task("digit_b", ten),
             "item": Task("item", ten), "group": Task("group", ("shoes", "gendered", "unisex"))}
    torch.manual_seed(0)
    net = build_model(config, tasks, shape)
    replicas = replicate([net])
    weighting = create_method(config.loss, config.task_names, 1)
    views = parameter_views(net, replicas)
    weighting.bind(views)
    optimizer = build_optimizer(config.optim, replicas.parameters(), extra=weighting.parameters())
    step = make_step(replicas, net, weighting, optimizer, TaskLosses(config, torch.device("cpu")), views,
                     diagnostics=config.train.diagnostics, grad_clip=None, steps_per_epoch=10**9)
    g = torch.Generator().manual_seed(0)
    batch = config.train.batch_size
    x = torch.randn(1, batch, *shape, generator=g)
    y = {t: torch.randint(0, tasks[t].num_classes, (1, batch), generator=g) for t in config.task_names}
    return step, x, y


def timed(step, x, y, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    if step.diagnostics is not None:
        step.diagnostics.summary()  # the epoch-end summary is part of the cost
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), every {args.every}, "
          f"{args.steps} steps x {args.rounds} rounds")
    print(f"{'model':<12} {'method':<8} {'off ms':>8} {'on ms':>8} {'ratio':>6}")
    for model in MODELS:
        for method in ("fixed", "upgrad"):
            plain, measured = build_step(model, method, None), build_step(model, method, args.every)
            for s in (plain, measured):
                timed(*s, 3)  # warm-up
            off, on, ratios = [], [], []
            for _ in range(args.rounds):
                a, b = timed(*plain, args.steps), timed(*measured, args.steps)
                off.append(a)
                on.append(b)
                ratios.append(b / a)
            print(f"{model:<12} {method:<8} {1000 * statistics.median(off):8.2f} {1000 * statistics.median(on):8.2f} "
                  f"{statistics.median(ratios):6.3f}")


if __name__ == "__main__":
    main()
